import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SgmoeError, errorMessage } from '../errors';
import { writeFileAtomic } from '../fleet/atomic';
import { openCommand } from '../fleet/command-signature';
import type { TrustedKeys } from '../fleet/keys';
import { silentLogger, type Logger } from '../log';
import type { CommandEnvelope } from '../protocol/command';

export interface CommandAuthoriserOptions {
  /** The operator keys whose envelopes this device accepts; none = every state-changing command is refused. */
  keys: TrustedKeys | null;
  /** This device's place in the topics: an envelope for any other is refused. */
  site: string;
  device: string;
  /** How far an envelope's timestamp may be from this device's clock, either way. */
  windowMs: number;
  /** Where the nonces seen within the window are kept, so a restart does not reopen the window for replays. */
  nonceFile?: string;
  now?: () => number;
  logger?: Logger;
}

export interface Authorised {
  args: unknown;
  keyId: string;
}

const nonceFileSchema = z.record(z.string(), z.number());

/**
 * Decides whether a state-changing command comes from the operator, for this device, now, for the first time:
 * its envelope verifies under a trusted key (E_CMD_UNAUTHORISED), names this site, device, command and
 * correlation id (E_CMD_UNAUTHORISED), carries a timestamp within the window (E_CMD_STALE), arrives by its
 * signed deadline when it has one (E_CMD_EXPIRED) and carries a nonce not seen within the window (E_CMD_REPLAYED). Nonces are remembered until their envelope could no longer be fresh.
 */
export class CommandAuthoriser {
  private readonly now: () => number;
  private readonly log: Logger;
  /** nonce -> when its envelope stops being fresh (ms since epoch). */
  private readonly seen = new Map<string, number>();
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly options: CommandAuthoriserOptions) {
    this.now = options.now ?? Date.now;
    this.log = (options.logger ?? silentLogger).child({ module: 'command-auth' });
    if (options.nonceFile) this.load(options.nonceFile);
  }

  async authorise(name: string, id: string, envelope: CommandEnvelope | undefined): Promise<Authorised> {
    const { keys, site, device, windowMs } = this.options;
    if (!keys || keys.ids.length === 0) {
      throw new SgmoeError('E_CMD_UNAUTHORISED', `${name} changes the device, and this node trusts no operator key: configure mqtt.commands.trustedKeys (or fleet.trustedKeys)`);
    }
    if (!envelope) {
      throw new SgmoeError('E_CMD_UNAUTHORISED', `${name} changes the device: expected an envelope signed by a trusted operator key, found none (see \`sgmoe cmd\`)`);
    }
    const { command, keyId } = openCommand(envelope, keys);
    const wrong = [
      ['command', command.command, name],
      ['site', command.site, site],
      ['device', command.device, device],
      ['id', command.id, id],
    ].filter(([, signed, here]) => signed !== here);
    if (wrong.length > 0) {
      const what = wrong.map(([field, signed, here]) => `${field} ${JSON.stringify(signed)} (expected ${JSON.stringify(here)})`).join(', ');
      throw new SgmoeError('E_CMD_UNAUTHORISED', `the envelope was signed for another target: ${what}`, { keyId });
    }
    const now = this.now();
    const ts = Date.parse(command.ts);
    if (Math.abs(now - ts) > windowMs) {
      throw new SgmoeError(
        'E_CMD_STALE',
        `the envelope was signed at ${command.ts}, ${Math.round((now - ts) / 1000)} s from this device's clock: expected within ${windowMs / 1000} s`,
        { ts: command.ts, windowMs },
      );
    }
    if (command.expires !== undefined && now > Date.parse(command.expires)) {
      const late = Math.round((now - Date.parse(command.expires)) / 100) / 10;
      throw new SgmoeError(
        'E_CMD_EXPIRED',
        `the command had to arrive by ${command.expires}, and arrived ${late} s later by this device's clock: the operator had given up on it, so it is not run. ` +
          "Send it again if it is still wanted; if it was sent just now, this device's clock is ahead: check its NTP sync",
        { expires: command.expires, lateS: late },
      );
    }
    this.forgetExpired(now);
    if (this.seen.has(command.nonce)) {
      throw new SgmoeError('E_CMD_REPLAYED', `the envelope with nonce ${command.nonce} was used already: expected a fresh one per command`, { nonce: command.nonce });
    }
    this.seen.set(command.nonce, ts + windowMs);
    await this.save();
    this.log.info({ command: name, id, keyId }, 'command authorised');
    return { args: command.args, keyId };
  }

  private forgetExpired(now: number): void {
    for (const [nonce, until] of this.seen) if (until < now) this.seen.delete(nonce);
  }

  private load(path: string): void {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.unreadable(path, errorMessage(err));
      return;
    }
    const parsed = nonceFileSchema.safeParse(safeJson(text));
    if (!parsed.success) return this.unreadable(path, 'not a nonce file');
    for (const [nonce, until] of Object.entries(parsed.data)) this.seen.set(nonce, until);
  }

  /** A lost nonce file only reopens replays for one window after a restart: worth a warning, not a stop. */
  private unreadable(path: string, why: string): void {
    this.log.warn({ path, why }, 'command nonce file unreadable: starting with none remembered');
  }

  /** One write at a time, each with the set as it is then. A failed write is logged: the set in memory still holds. */
  private save(): Promise<void> {
    const path = this.options.nonceFile;
    if (!path) return Promise.resolve();
    this.saving = this.saving.then(() =>
      writeFileAtomic(path, JSON.stringify(Object.fromEntries(this.seen))).catch((err: unknown) =>
        this.log.warn({ path, err: errorMessage(err) }, 'could not persist command nonces: replays stay refused until a restart'),
      ),
    );
    return this.saving;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
