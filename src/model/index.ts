export * from './manifest';
export { sha256File, sha256Hex } from './integrity';
export { loadPackage, expertPartName, type ModelPackage, type PackagePart, type PartName, type LoadPackageOptions } from './package';
export { loadSelftest, selftestSchema, type Selftest, type SelftestCase, type GoldenDecision } from './selftest';
export { readFactoryReport, QUICK_BUILD_WARNING, type FactoryReport } from './report';
