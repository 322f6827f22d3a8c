/** Tests run the TypeScript sources directly; real ONNX Runtime, SQLite and MQTT brokers make them slow-ish. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: '<rootDir>/test/helpers/node-environment.js',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  testTimeout: 60000,
  // Tests share 2 cores with ONNX Runtime and brokers: run files one after another.
  maxWorkers: 1,
  reporters: ['default', '<rootDir>/test/helpers/summary-reporter.js'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
};
