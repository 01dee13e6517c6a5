/**
 * The machine's durable state: the meter (cumulative units per agreement) and the newest signed
 * reading per agreement. Written atomically (temp file, fsync, rename, fsync of the directory)
 * with a format version and a SHA-256 checksum, so a power cut leaves either the old or the new
 * file, never a mix. A damaged file is reported with {@link BufferCorruptError}; it is never
 * silently replaced by zeros, because a meter reset to zero would bill less than was used.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { PpuError } from "../shared/errors.ts";
import type { ReadingMessage } from "../shared/protocol.ts";
import { writeFileAtomic } from "./keys.ts";

export const BUFFER_FORMAT_VERSION = 1;

export class BufferCorruptError extends PpuError {
  override name = "BufferCorruptError";
  readonly path: string;
  constructor(path: string, reason: string) {
    super("DEVICE_BUFFER_CORRUPT", `device buffer file ${path} is damaged: ${reason}`, {
      details:
        "the meter was NOT reset; restore the file from a backup or inspect it before restarting",
    });
    this.path = path;
  }
}

export interface AgreementState {
  /** Cumulative units measured for this agreement (decimal string, arbitrary size). */
  cumulativeUnits: string;
  /** The newest signed reading, kept until the oracle reports it settled. */
  newestReading?: ReadingMessage;
  /** Highest cumulative units the oracle reported as settled on-chain. */
  settledUnits?: string;
}

export interface BufferState {
  machineId: string;
  agreements: Record<string, AgreementState>;
}

interface BufferFile {
  format: "ppu-device-buffer";
  version: number;
  sha256: string;
  state: BufferState;
}

function checksum(state: BufferState): string {
  return createHash("sha256").update(JSON.stringify(state)).digest("hex");
}

/** Saves the state atomically. */
export function saveBuffer(path: string, state: BufferState): void {
  const file: BufferFile = {
    format: "ppu-device-buffer",
    version: BUFFER_FORMAT_VERSION,
    sha256: checksum(state),
    state,
  };
  writeFileAtomic(path, `${JSON.stringify(file)}\n`, 0o600);
}

/**
 * Loads the state. Returns `undefined` only when the file does not exist (a machine's first
 * start); any other problem throws {@link BufferCorruptError}.
 */
export function loadBuffer(path: string): BufferState | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  if (text.length === 0) throw new BufferCorruptError(path, "file is empty (truncated)");
  let file: BufferFile;
  try {
    file = JSON.parse(text) as BufferFile;
  } catch {
    throw new BufferCorruptError(
      path,
      `not valid JSON (truncated or overwritten; ${text.length} bytes)`,
    );
  }
  if (typeof file !== "object" || file === null || file.format !== "ppu-device-buffer") {
    throw new BufferCorruptError(path, "not a device buffer file");
  }
  if (file.version !== BUFFER_FORMAT_VERSION) {
    throw new BufferCorruptError(path, `unsupported format version ${String(file.version)}`);
  }
  if (
    typeof file.state !== "object" ||
    file.state === null ||
    checksum(file.state) !== file.sha256
  ) {
    throw new BufferCorruptError(path, "checksum mismatch");
  }
  for (const [id, agreement] of Object.entries(file.state.agreements ?? {})) {
    if (!/^\d+$/.test(agreement.cumulativeUnits)) {
      throw new BufferCorruptError(
        path,
        `agreement ${id}: cumulativeUnits is not a decimal integer`,
      );
    }
  }
  return file.state;
}
