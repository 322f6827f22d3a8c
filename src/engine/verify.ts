import { errorCode, errorMessage } from '../errors';
import { loadPackage } from '../model/package';
import { QUICK_BUILD_WARNING, readFactoryReport } from '../model/report';
import { loadSelftest } from '../model/selftest';
import { Engine, type EngineOptions } from './engine';
import { describeTolerance, runSelftest, type SelftestReport } from './selftest-run';

export interface VerifyCheck {
  /** manifest, sha256, shapes, selftest */
  name: string;
  ok: boolean;
  detail: string;
  code?: string;
}

export interface VerifyReport {
  ok: boolean;
  checks: VerifyCheck[];
  /** What the checks pass but a person should know (a quick build). */
  warnings?: string[];
  selftest?: SelftestReport;
}

/**
 * Everything `sgmoe model verify DIR` checks, in order, stopping at the first failed stage: the manifest, every
 * part's sha256, the parts' tensor names and shapes (by loading them in ONNX Runtime), and the self-test's golden
 * outputs and decisions.
 */
export async function verifyPackage(dir: string, options: EngineOptions = {}): Promise<VerifyReport> {
  const checks: VerifyCheck[] = [];
  const fail = (name: string, err: unknown): VerifyReport => {
    checks.push({ name, ok: false, detail: errorMessage(err), code: errorCode(err) });
    return { ok: false, checks };
  };

  let pkg;
  try {
    pkg = await loadPackage(dir);
  } catch (err) {
    return fail(errorCode(err) === 'E_HASH_MISMATCH' ? 'sha256' : 'manifest', err);
  }
  const { manifest } = pkg;
  checks.push({ name: 'manifest', ok: true, detail: `${manifest.name} ${manifest.version}: ${manifest.labels.length} labels, ${pkg.experts.length} experts` });
  checks.push({ name: 'sha256', ok: true, detail: `${3 + pkg.experts.length} parts match the manifest` });

  let engine: Engine;
  try {
    engine = await Engine.load(pkg, { ...options, warmup: false });
  } catch (err) {
    return fail('shapes', err);
  }
  try {
    checks.push({ name: 'shapes', ok: true, detail: `parts load in ONNX Runtime on ${[...new Set(Object.values(engine.providerSummary()))].join(', ')} and fit each other` });
    let selftest;
    try {
      selftest = await runSelftest(engine, await loadSelftest(pkg.selftestPath));
    } catch (err) {
      return fail('selftest', err);
    }
    const worst = Object.entries(selftest.maxAbsDiff).map(([part, d]) => `${part} ${d.toExponential(1)}`).join(', ');
    checks.push({
      name: 'selftest',
      ok: selftest.ok,
      detail: selftest.ok
        ? `${selftest.cases} golden cases: every decision identical; max |diff| vs PyTorch: ${worst} (tolerance ${describeTolerance(selftest.tolerance)})`
        : selftest.failures.map((f) => `${f.caseId} ${f.check}: ${f.message}`).join('\n'),
      ...(selftest.ok ? {} : { code: 'E_SELFTEST_FAILED' }),
    });
    const warnings = (await readFactoryReport(pkg.dir))?.quick ? [`${manifest.name} ${manifest.version} is ${QUICK_BUILD_WARNING}`] : [];
    return { ok: selftest.ok, checks, selftest, ...(warnings.length > 0 && { warnings }) };
  } finally {
    await engine.dispose();
  }
}
