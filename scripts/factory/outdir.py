"""The one check of a factory's --out, made before any training: a package replaces its --out folder whole, so
that folder must be new, empty or an earlier package, and apart from the data it is trained on."""
import os


def out_problem(out, data=None):
    """What is wrong with `out` as a package folder (None when nothing): not given, a file, a folder of something
    else (the current folder, a project), the data folder, one inside it or one holding it, a parent that is a file."""
    if not out:
        return 'the following arguments are required: --out'
    path = os.path.realpath(out)
    if data is not None:
        source = os.path.realpath(data)
        if path == source or path.startswith(source + os.sep) or source.startswith(path + os.sep):
            return (f'--out {out} is, holds or lies in the data folder {data}: the package would replace or join the '
                    'training images; give a folder apart from them')
    if os.path.isdir(path):
        if os.listdir(path) and not os.path.isfile(os.path.join(path, 'manifest.json')):
            return (f'--out {out} holds files and is no model package (no manifest.json): a package replaces its '
                    'folder whole, so give a new or empty folder, or an earlier package')
        return None
    if os.path.exists(path):
        return f'--out {out} is a file; expected a package folder'
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return None if os.path.isdir(parent) else f'--out {out} lies under {parent}, which is a file'
