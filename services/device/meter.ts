/**
 * A meter that accumulates units per agreement and produces signed cumulative readings
 * (ReadingMessage v1, EIP-712 signed by the device key through the shared signing code).
 * With a buffer path every change is persisted before it is acknowledged to the caller.
 */
import type { Hex } from "viem";
import type { ReadingDomain } from "../shared/eip712.ts";
import { PROTOCOL_VERSION, type ReadingMessage } from "../shared/protocol.ts";
import { signReading, type DeviceSigningKey } from "../shared/signatures.ts";
import { loadBuffer, saveBuffer, type BufferState } from "./buffer.ts";

export interface MeterOptions {
  machineId: Hex;
  key: DeviceSigningKey;
  domain: ReadingDomain;
  /** Where the meter and the newest readings are persisted; omit for an in-memory meter. */
  bufferPath?: string;
  /** Clock in unix seconds (tests inject one). */
  now?: () => number;
}

export class Meter {
  readonly machineId: Hex;
  private readonly key: DeviceSigningKey;
  private readonly domain: ReadingDomain;
  private readonly bufferPath?: string;
  private readonly now: () => number;
  private state: BufferState;

  constructor(options: MeterOptions) {
    this.machineId = options.machineId;
    this.key = options.key;
    this.domain = options.domain;
    this.bufferPath = options.bufferPath;
    this.now = options.now ?? (() => Math.floor(Date.now() / 1000));
    const loaded = options.bufferPath ? loadBuffer(options.bufferPath) : undefined;
    if (loaded && loaded.machineId.toLowerCase() !== options.machineId.toLowerCase()) {
      throw new Error(`buffer belongs to machine ${loaded.machineId}, not ${options.machineId}`);
    }
    this.state = loaded ?? { machineId: options.machineId, agreements: {} };
  }

  /** Cumulative units measured for an agreement. */
  units(agreementId: bigint): bigint {
    return BigInt(this.state.agreements[agreementId.toString()]?.cumulativeUnits ?? "0");
  }

  agreementIds(): bigint[] {
    return Object.keys(this.state.agreements).map((id) => BigInt(id));
  }

  /** Adds units and persists; returns the new cumulative total. */
  add(agreementId: bigint, units: bigint): bigint {
    if (units < 0n) throw new RangeError("units must not be negative");
    const id = agreementId.toString();
    const entry = (this.state.agreements[id] ??= { cumulativeUnits: "0" });
    entry.cumulativeUnits = (BigInt(entry.cumulativeUnits) + units).toString();
    this.persist();
    return BigInt(entry.cumulativeUnits);
  }

  /** Signs the current cumulative reading for an agreement, stores it as the newest, persists. */
  sign(agreementId: bigint): ReadingMessage {
    const id = agreementId.toString();
    const entry = (this.state.agreements[id] ??= { cumulativeUnits: "0" });
    const timestamp = this.now();
    const cumulativeUnits = BigInt(entry.cumulativeUnits);
    const signature = signReading(
      this.domain,
      { agreementId, machineId: this.machineId, cumulativeUnits, timestamp: BigInt(timestamp) },
      this.key,
    );
    const message: ReadingMessage = {
      v: PROTOCOL_VERSION,
      agreementId: id,
      machineId: this.machineId,
      cumulativeUnits: cumulativeUnits.toString(),
      timestamp,
      signature,
    };
    entry.newestReading = message;
    this.persist();
    return message;
  }

  /** The newest signed reading not yet known to be settled, if any. */
  pending(agreementId: bigint): ReadingMessage | undefined {
    const entry = this.state.agreements[agreementId.toString()];
    if (!entry?.newestReading) return undefined;
    const settled = BigInt(entry.settledUnits ?? "0");
    return BigInt(entry.newestReading.cumulativeUnits) > settled ? entry.newestReading : undefined;
  }

  /** Records that the chain settled the agreement up to `units`; drops a reading at or below it. */
  markSettled(agreementId: bigint, units: bigint): void {
    const entry = (this.state.agreements[agreementId.toString()] ??= { cumulativeUnits: "0" });
    if (units <= BigInt(entry.settledUnits ?? "0")) return;
    entry.settledUnits = units.toString();
    if (entry.newestReading && BigInt(entry.newestReading.cumulativeUnits) <= units)
      delete entry.newestReading;
    this.persist();
  }

  private persist(): void {
    if (this.bufferPath) saveBuffer(this.bufferPath, this.state);
  }
}
