import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { z } from 'zod';
import { SgmoeError, errorMessage } from '../errors';
import { parseText, validate } from '../validate';
import { preprocessOptionsSchema } from '../ingest/preprocess';
import { DEFAULT_THRESHOLDS, DEFAULT_WINDOW_SIZE } from '../audit/health';
import { DEFAULT_MIN_FREE_BYTES } from '../audit/frame-store';
import { MIN_TOKEN_LENGTH, OPERATOR_NAME } from './dashboard/auth';

const sourceSchema = z
  .object({
    /** dir:PATH, http(s)://…, mjpeg+http(s)://…, mqtt:TOPIC, rtsp://…, v4l2:/dev/videoN, video:PATH (docs/DESIGN.md). */
    uri: z.string().min(1),
    name: z.string().min(1).optional(),
    /** What a full queue does: drop-oldest suits live cameras, block suits folders. */
    policy: z.enum(['block', 'drop-oldest']).optional(),
    capacity: z.number().int().positive().optional(),
    /** Snapshot polling interval (http sources). */
    intervalMs: z.number().int().positive().optional(),
    timeoutMs: z.number().int().positive().optional(),
    /** Hot folders: how often the folder is listed (default 250 ms). */
    pollMs: z.number().int().positive().optional(),
    /** Hot folders: a file is taken once its size and mtime held still this long (default 1000 ms); raise it for slow writers. */
    stableMs: z.number().int().nonnegative().optional(),
    /** Hot folders: a file rejected as cut short is watched this long before it moves to rejected/ (default 10000 ms; with --once and once stopping, none). */
    rejectAfterMs: z.number().int().nonnegative().optional(),
    /** RTP over the RTSP connection (tcp, default) or over UDP (rtsp sources). */
    transport: z.enum(['tcp', 'udp']).optional(),
    /** What a USB camera is asked for (v4l2 sources); ffmpeg's names for pixel formats (mjpeg, yuyv422, ...). */
    capture: z
      .object({ width: z.number().int().positive(), height: z.number().int().positive(), fps: z.number().positive(), pixelFormat: z.string().regex(/^[a-z0-9_]+$/) })
      .partial()
      .strict()
      .optional(),
    /** A recorded file at its own frame rate (native) or as fast as the node takes it (fast) (video sources). */
    rate: z.enum(['native', 'fast']).optional(),
    /** Signal sources: each sample times this, into the package's units (m/s² to g: 0.10197; mg to g: 0.001). */
    gain: z.number().positive().finite().optional(),
  })
  .extend(preprocessOptionsSchema.partial().shape)
  .strict();

export const nodeConfigSchema = z
  .object({
    /** Model package directory. */
    model: z.string().min(1),
    /** Device profile name (devices/NAME.json), a profile file, or "auto" for the one that fits this host. */
    device: z.string().min(1).default('auto'),
    /** Overrides the profile's intra-op threads. */
    threads: z.number().int().nonnegative().optional(),
    // Frame ids (name@...), counters and audit rows tell sources apart by name (the URI when none is given).
    sources: z
      .array(sourceSchema)
      .default([])
      .superRefine((sources, ctx) => {
        const seen = new Set<string>();
        sources.forEach((s, i) => {
          const name = s.name ?? s.uri;
          if (seen.has(name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `expected a name of its own, found ${JSON.stringify(name)} again: frame ids and counters tell sources apart by name` });
          seen.add(name);
        });
      }),
    routing: z
      .object({
        threshold: z.number().min(0).max(1.000001).optional(),
        /** Mean MACs per frame the node may spend; picks the threshold from the calibration curve. */
        computeBudgetMacs: z.number().positive().optional(),
        topK: z.number().int().positive().optional(),
        mode: z.enum(['moe', 'base-only']).optional(),
        /** Task anomaly: the share of good frames flagged; each package's good-score quantiles give its threshold. */
        falseAlarmRate: z.number().gt(0).lt(1).optional(),
      })
      .strict()
      .refine((r) => r.threshold === undefined || r.computeBudgetMacs === undefined, 'give threshold or computeBudgetMacs, not both')
      .default({}),
    /** Micro-batching across sources; defaults from the device profile. */
    batch: z.object({ maxSize: z.number().int().positive(), maxWaitMs: z.number().nonnegative() }).partial().strict().default({}),
    /** Frames preprocessed or waiting for a decision per source at once (default: the batch size, so one camera can fill a batch). */
    window: z.number().int().positive().optional(),
    /** MQTT transport (src/transport/config.ts); absent = no MQTT. */
    mqtt: z.record(z.string(), z.unknown()).optional(),
    /** Condition-monitoring alarms (packages with task condition): windows in a row before a change counts, and the normal condition. */
    conditionAlarms: z.object({ windows: z.number().int().positive().default(3), normal: z.string().min(1).default('healthy') }).strict().default({ windows: 3, normal: 'healthy' }),
    audit: z
      .object({
        file: z.string().min(1),
        retention: z
          .object({ maxAgeDays: z.number().positive(), maxRows: z.number().int().positive(), maxBytes: z.number().int().positive() })
          .partial()
          .strict()
          .optional(),
        /** Input bytes kept for operators' review and dataset export (src/audit/frame-store.ts), in frames/ beside the file. */
        frames: z
          .object({
            keep: z.enum(['none', 'anomalous', 'all']).default('anomalous'),
            maxFiles: z.number().int().positive().default(1000),
            maxBytes: z.number().int().positive().default(200 * 1024 * 1024),
            /** Free space left on the disk for the audit log and the outbox: below it, kept frames go first. */
            minFreeBytes: z.number().int().nonnegative().default(DEFAULT_MIN_FREE_BYTES),
          })
          .strict()
          .default({ keep: 'anomalous', maxFiles: 1000, maxBytes: 200 * 1024 * 1024, minFreeBytes: DEFAULT_MIN_FREE_BYTES }),
        /** Routing and score health (src/audit/health.ts DEFAULT_THRESHOLDS): the window and the alarms' bounds. */
        health: z
          .object({
            windowSize: z.number().int().positive(),
            minSamples: z.number().int().positive(),
            collapseShare: z.number().min(0).max(1),
            starvedShare: z.number().min(0).max(1),
            drift: z.number().min(0).max(1),
            anomalyRate: z.number().min(0).max(1),
            scoreDrift: z.number().min(0).max(1),
            hysteresis: z.number().min(0).max(1),
          })
          .partial()
          .strict()
          .refine((h) => (h.minSamples ?? DEFAULT_THRESHOLDS.minSamples) <= (h.windowSize ?? DEFAULT_WINDOW_SIZE), { message: 'minSamples: expected at most windowSize (alarms are judged on the window)' })
          .optional(),
      })
      .strict()
      .optional(),
    /** Remote model updates (src/fleet/): where this device keeps its packages, and whose signatures it trusts. */
    fleet: z
      .object({
        /** The device's package folder (packages/, staging/, the current pointer, the update state). */
        root: z.string().min(1),
        /** PEM files of the ed25519 public keys whose signatures this device accepts. */
        trustedKeys: z.array(z.string().min(1)).min(1),
        /** Packages kept installed, the running one included (rollback needs at least 2). */
        keep: z.number().int().min(2).default(3),
        watch: z
          .object({
            windowMs: z.number().int().positive(),
            intervalMs: z.number().int().positive(),
            maxErrorRate: z.number().min(0).max(1),
            minFrames: z.number().int().nonnegative(),
            maxLatencyP99Us: z.number().positive(),
            maxDrift: z.number().min(0).max(1),
            minRouted: z.number().int().nonnegative(),
            maxAnomalyRate: z.number().min(0).max(1),
            minAnomalyFrames: z.number().int().nonnegative(),
          })
          .partial()
          .strict()
          .optional(),
        limits: z
          .object({
            maxDownloadBytes: z.number().int().positive(),
            downloadTimeoutMs: z.number().int().positive(),
            /** No byte for this long aborts a download (default 60 s). */
            stallTimeoutMs: z.number().int().positive(),
            maxUnpackedBytes: z.number().int().positive(),
            maxFiles: z.number().int().positive(),
            /** Retries of a download whose connection failed (default 3), after 2 s, 4 s, 8 s... */
            downloadRetries: z.number().int().nonnegative(),
            retryBackoffMs: z.number().int().positive(),
          })
          .partial()
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    dashboard: z
      .object({
        port: z.number().int().min(0).max(65535),
        host: z.string().default('127.0.0.1'),
        /** The operator token every request but the page requires (src/node/dashboard/auth.ts); SGMOE_DASHBOARD_TOKEN when absent. */
        token: z.string().min(MIN_TOKEN_LENGTH).optional(),
        /** Named operators' tokens: a verdict sent with one is recorded under that name, whatever the page typed. */
        operators: z
          .array(z.object({ name: z.string().regex(OPERATOR_NAME, 'letters, digits, ., - and _ (at most 40)'), token: z.string().min(MIN_TOKEN_LENGTH) }).strict())
          .optional(),
        /** Serve a non-loopback host without a token: anyone who reaches the port may then read, and write verdicts. */
        withoutToken: z.boolean().default(false),
        /** The old name, which covered verdicts only: refused with the new one named, so no config silently changes meaning. */
        reviewsWithoutToken: z.never({ error: 'renamed: use dashboard.withoutToken, which covers reads (frames, /metrics) as well as verdicts' }).optional(),
      })
      .strict()
      .optional(),
    /** Period of health reports on MQTT and in the live summary. */
    healthIntervalMs: z.number().int().positive().default(10_000),
    /** `--once`: finite sources (a folder's current files) are handled, then the node stops. */
    once: z.boolean().default(false),
  })
  .strict();

export type NodeConfigInput = z.input<typeof nodeConfigSchema>;
export type NodeConfig = z.output<typeof nodeConfigSchema>;
export type SourceConfig = NodeConfig['sources'][number];

export function parseNodeConfig(input: unknown, where = 'node config'): NodeConfig {
  return validate(nodeConfigSchema, input, { code: 'E_CONFIG_INVALID', where });
}

/** Reads a JSON or YAML config file; relative paths inside it stay relative to the working directory. */
export async function readConfigFile(path: string): Promise<NodeConfigInput> {
  const edge = { code: 'E_CONFIG_INVALID', where: `config file ${path}` } as const;
  let text: string;
  try {
    text = await readFile(resolve(path), 'utf8');
  } catch (err) {
    throw new SgmoeError('E_CONFIG_INVALID', `cannot read config file ${path}: ${errorMessage(err)}`);
  }
  return parseText(text, edge, path) as NodeConfigInput;
}
