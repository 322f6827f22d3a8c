"""--budget, run: budget.py's plan carried out on the workers, with honest selection. The validation split is cut in
two seeded halves: half A early-stops every trained model and chooses K and the expert epochs; half B chooses the
early-exit threshold and the ensemble weight of the chosen candidate (and of the random-gate ablation). The test split
is touched once, by package.write at the end."""
import time
from dataclasses import dataclass, field, replace

import torch

import budget
import calibrate
from jobs import classifier_job, generalist_job, joint_job, probe_job
from models import Classifier, JointMoE
from package import Trained
from sgmoe import SHARE_RANGE, choose_k, embed, train_sgmoe_variant
from train import progress

RULE = ('among the candidates whose experts all get 5-60% of the routed half-A samples (all of them if none does), '
        'the best half-A accuracy at its own half-A operating point; candidates within 0.1 point of it -> the '
        'smallest K, then the fewest expert epochs')


@dataclass
class Clock:
    """Elapsed time, and the time left estimated from the plan's remaining stages scaled by how the finished ones
    compared with their estimates."""
    started: float
    stages: list  # [(name, estimate)]
    actual: dict = field(default_factory=dict)
    best: str = '-'
    mark: float = None  # when the stage now running began (the previous one ended)

    def elapsed(self) -> float:
        return time.time() - self.started

    def ratio(self) -> float:
        """Actual / estimated time of the finished stages (the probe runs alone; the jobs share the cores)."""
        planned = sum(e for n, e in self.stages if n in self.actual)
        return min(4.0, max(0.5, sum(self.actual.values()) / planned)) if planned else 1.0

    def projected(self, names) -> float:
        """Seconds the named stages should take: training stages scaled by ratio(), the package (no training) not."""
        estimates = dict(self.stages)
        return sum(estimates[n] * (1.0 if n.startswith('package') else self.ratio()) for n in names)

    def left(self) -> float:
        return self.projected([n for n, _ in self.stages if n not in self.actual])

    def say(self, stage: str) -> None:
        progress('budget', f'stage {stage} | elapsed {budget.minutes(self.elapsed())} | est. left '
                           f'{budget.minutes(self.left())} | best so far {self.best}')

    def done(self, stage: str) -> None:
        now = time.time()
        self.actual[stage], self.mark = now - self.mark, now


def halves(n: int, seed: int):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    return order[:n // 2].sort().values, order[n // 2:].sort().values


def on_half_b(variant, val_b):
    """The threshold x baseWeight sweep redone on half B; half A's operating point stays in the setup."""
    outputs = variant.model.outputs(val_b.normalised())
    points = calibrate.sweep(outputs, val_b.labels, variant.macs)
    operating = calibrate.operating_point(points)
    progress(variant.name, f'half-B operating point: threshold {operating["threshold"]} baseWeight '
                           f'{operating["baseWeight"]} accuracy {operating["accuracy"]:.4f}')
    return replace(variant, points=points, operating=operating, setup={**variant.setup, 'halfA': variant.operating})


def _row(key, variant, seconds) -> dict:
    op = variant.operating
    return {'k': key[0], 'expertEpochs': key[1], 'valAAccuracy': op['accuracy'], 'threshold': op['threshold'],
            'baseWeight': op['baseWeight'], 'meanMacs': op['meanMacs'], 'expertShare': op['expertShare'],
            'balanced': all(SHARE_RANGE[0] <= s <= SHARE_RANGE[1] for s in op['expertShare']),
            'bestExpertEpochs': [max(h, key=lambda e: e['valAccuracy'])['epoch'] if h else 0
                                 for h in variant.setup['expertHistories']],
            'seconds': round(seconds, 1)}


def run(pool, args, recipe, splits, data, started: float, dense_arch_of) -> Trained:
    """The budgeted build. `recipe` is already fitted to the MACs cap; dense_arch_of(recipe, k, shape) is main's."""
    # The dense baseline matches the worst case with the gate of the largest K candidate (a few hundred MACs more).
    dense = dense_arch_of(recipe, max(budget.K_CANDIDATES), splits.train.shape)
    # Every worker probes at once, so the timings include the two jobs sharing the cores (and any outside load).
    probes = [pool.submit(probe_job, recipe.arch, recipe.expert_arch, recipe.epochs.batch_size, dense, data)
              for _ in range(args.workers)]
    timings = [p.result() for p in probes]
    per_sample = {job: sum(t[job] for t in timings) / len(timings) for job in timings[0]}
    half_a, half_b = halves(len(splits.val), args.seed)
    plan = budget.make_plan(recipe, args.budget - (time.time() - started), per_sample, len(half_a), args.workers,
                            args.quick)
    stages = plan.stages(recipe)
    clock = Clock(started, stages, mark=time.time())
    for name, estimate in stages:
        progress('budget', f'plan: {name}: est. {budget.minutes(estimate)}')
    for line in plan.dropped:
        progress('budget', f'plan: dropped {line}')
    recipe = replace(recipe, epochs=replace(recipe.epochs, epochs=plan.epochs),
                     generalist=replace(recipe.generalist, epochs=plan.generalist_epochs))
    search_splits = replace(splits, val=splits.val.take(half_a))

    clock.say('base + dense')
    dense_future = pool.submit(classifier_job, 'dense', dense, recipe.epochs, data, recipe.train_size, half_a)
    base_state, base_history = pool.submit(classifier_job, 'base', recipe.arch, recipe.epochs, data,
                                           recipe.train_size, half_a).result()
    base = Classifier(recipe.arch)
    base.load_state_dict(base_state)
    base.eval()
    clock.done('base + dense')

    clock.say('generalist + embedding')
    generalist_future = pool.submit(generalist_job, 'generalist', recipe.arch, recipe.expert_arch, base_state,
                                    recipe.generalist, data, recipe.train_size, half_a)
    embedded = embed(base, search_splits, recipe.train_size, recipe.gate_grid)
    start, generalist_history = generalist_future.result()
    clock.done('generalist + embedding')

    variants, rows, dropped = {}, [], []
    pending = []

    def submit(key):
        brief = replace(recipe, experts=replace(recipe.experts, epochs=key[1]))
        return train_sgmoe_variant(pool, f'sgmoe-k{key[0]}-e{key[1]}', base, embedded, brief, search_splits, key[0],
                                   data, True, start, half_a)

    def fits(name) -> bool:
        """Whether the run still ends within the budget with candidate `name` added to those in flight (later
        candidates are judged in their turn)."""
        running = {n for _, n, _ in pending} | {name}
        return clock.elapsed() + clock.projected([n for n, _ in stages if n not in clock.actual and n not in dropped
                                                  and (not n.startswith('candidate') or n in running)]) <= args.budget

    for key, name in zip(plan.candidates, [n for n, _ in stages if n.startswith('candidate')]):
        if len(variants) + len(pending) >= 2 and not fits(name):
            dropped.append(name)
            progress('budget', f'dropped {name} at run time: the projected finish is over the budget')
            continue
        pending.append((key, name, submit(key)))
        if len(pending) == 2:  # one candidate ahead keeps both workers busy while the main process calibrates
            _resolve(pending.pop(0), variants, rows, clock)
    reserve_run = []
    for key in plan.reserve:  # the plan's estimates can be pessimistic: what it dropped runs if there is time left
        name = f'candidate K={key[0]} epochs={key[1]}'
        stages.insert(len(stages) - 2, (name, dict(replace(plan, candidates=[key]).stages(recipe))[name]))
        if fits(name):
            progress('budget', f'{name}: dropped by the plan, run as there is time left')
            reserve_run.append(name)
            pending.append((key, name, submit(key)))
            if len(pending) == 2:
                _resolve(pending.pop(0), variants, rows, clock)
        else:
            stages.pop(len(stages) - 3)
    while pending:
        _resolve(pending.pop(0), variants, rows, clock)

    chosen_key = choose_k(variants)
    chosen = variants[chosen_key]
    clock.best = f'K={chosen_key[0]} epochs={chosen_key[1]} half-A {chosen.operating["accuracy"]:.2%} (chosen)'
    recipe = replace(recipe, experts=replace(recipe.experts, epochs=chosen_key[1]))
    clock.say('random-gate ablation + joint MoE')
    joint_future = pool.submit(joint_job, 'joint-moe', recipe.arch, chosen_key[0], recipe.epochs, data,
                               recipe.train_size, half_a)
    ablation = train_sgmoe_variant(pool, 'random-gate', base, embedded, recipe, search_splits, chosen_key[0], data,
                                   False, start, half_a).result()
    val_b = splits.val.take(half_b)
    sgmoe, ablation = on_half_b(chosen, val_b), on_half_b(ablation, val_b)
    dense_state, dense_history = dense_future.result()
    joint_state, joint_history = joint_future.result()
    clock.done('random-gate ablation + joint MoE')
    clock.say('package (test split, export, checks)')

    facts = {
        'budgetSeconds': args.budget, 'tolerance': budget.TOLERANCE, 'cap': args.cap_facts,
        'architecture': args.arch_facts, 'probeSecondsPerSample': {k: round(v, 6) for k, v in per_sample.items()},
        'validationHalves': {'a': len(half_a), 'b': len(half_b), 'seed': args.seed},
        'plan': {'epochs': plan.epochs, 'generalistEpochs': plan.generalist_epochs,
                 'candidates': [list(c) for c in plan.candidates], 'dropped': plan.dropped,
                 'droppedAtRunTime': dropped, 'reserveRun': reserve_run,
                 'estimatedSeconds': round(plan.total(recipe), 1),
                 'stages': [{'stage': n, 'estimateSeconds': round(e, 1),
                             'actualSeconds': round(clock.actual[n], 1) if n in clock.actual else None}
                            for n, e in stages]},
        'search': rows, 'rule': RULE, 'chosen': {'k': chosen_key[0], 'expertEpochs': chosen_key[1]},
        'halfA': chosen.operating, 'halfB': sgmoe.operating,
        'secondsBeforePackage': round(clock.elapsed(), 1),
    }
    return Trained(recipe=recipe, splits=splits, base=base, base_history=base_history,
                   dense=_loaded(Classifier(dense), dense_state), dense_arch=dense, dense_history=dense_history,
                   joint=_loaded(JointMoE(recipe.arch, chosen_key[0]), joint_state), joint_history=joint_history,
                   sgmoe=sgmoe, ablation=ablation, generalist_history=generalist_history, k_sweep=None, budget=facts)


def _loaded(module, state):
    module.load_state_dict(state)
    return module.eval()


def _resolve(entry, variants, rows, clock) -> None:
    key, name, pending = entry
    clock.say(name)
    variants[key] = pending.result()
    clock.done(name)
    rows.append(_row(key, variants[key], clock.actual[name]))
    best_key = max(variants, key=lambda k: variants[k].operating['accuracy'])
    clock.best = f'K={best_key[0]} epochs={best_key[1]} half-A {variants[best_key].operating["accuracy"]:.2%}'
    clock.say(f'{name} done')
