/**
 * What the oracle needs to know from the chain — machines, their keys and trust modes, agreements and
 * their state — read once and kept fresh from the contract's events rather than re-read per message.
 */
import type { Abi, Address, Hex, Log, PublicClient } from "viem";
import { decodeEventLog } from "viem";
import type { DevicePublicKey } from "../shared/signatures.ts";

export const TRUST_DEVICE_SIGNED = 0;
export const TRUST_ORACLE_ATTESTED = 1;
export const STATUS_ACTIVE = 1;

export interface MachineInfo {
  trustMode: number;
  key?: DevicePublicKey;
  maxUnitsPerHour: bigint;
}

export interface AgreementInfo {
  machineId: Hex;
  status: number;
  startTime: bigint;
  endTime: bigint;
  closesAt: bigint;
  cumulativeUnits: bigint;
  lastReadingAt: bigint;
}

export interface ContractEvent {
  eventName: string;
  args: Record<string, unknown>;
  transactionHash: Hex | null;
  blockNumber: bigint | null;
}

/** How long a miss (unknown machine or agreement) is remembered, so a flood cannot hammer the node. */
const NEGATIVE_TTL_MS = 5_000;

const MACHINE_EVENTS = new Set(["DeviceKeyRotated", "DeviceKeyRevoked", "MachineRegistered"]);
const AGREEMENT_EVENTS = new Set([
  "AgreementOpened",
  "AgreementEnded",
  "AgreementClosed",
  "AgreementSuspended",
  "AgreementReinstated",
  "UsageRecorded",
  "EscrowToppedUp",
  "DebtRepaid",
]);

export class ChainState {
  private readonly machines = new Map<string, MachineInfo | number>();
  private readonly agreements = new Map<bigint, AgreementInfo | number>();
  private fromBlock: bigint | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;

  constructor(
    private readonly client: PublicClient,
    private readonly address: Address,
    private readonly abi: Abi,
    private readonly onEvents: (events: ContractEvent[]) => void = () => {},
  ) {}

  async machine(machineId: Hex): Promise<MachineInfo | undefined> {
    const key = machineId.toLowerCase();
    const cached = this.machines.get(key);
    if (typeof cached === "object") return cached;
    if (typeof cached === "number" && cached > Date.now()) return undefined;
    const m = (await this.client.readContract({
      address: this.address,
      abi: this.abi,
      functionName: "getMachine",
      args: [machineId],
    })) as {
      owner: Address;
      trustMode: number;
      keyType: number;
      maxUnitsPerHour: bigint;
      keyX: Hex;
      keyY: Hex;
    };
    if (/^0x0{40}$/i.test(m.owner)) {
      this.machines.set(key, Date.now() + NEGATIVE_TTL_MS);
      return undefined;
    }
    const info: MachineInfo = {
      trustMode: Number(m.trustMode),
      maxUnitsPerHour: BigInt(m.maxUnitsPerHour),
      key:
        Number(m.keyType) === 1
          ? { keyType: "secp256k1", address: `0x${m.keyX.slice(26)}` as Hex }
          : Number(m.keyType) === 2
            ? { keyType: "p256", x: m.keyX, y: m.keyY }
            : undefined,
    };
    this.machines.set(key, info);
    return info;
  }

  async agreement(agreementId: bigint, fresh = false): Promise<AgreementInfo | undefined> {
    const cached = this.agreements.get(agreementId);
    if (!fresh && typeof cached === "object") return cached;
    if (!fresh && typeof cached === "number" && cached > Date.now()) return undefined;
    const a = (await this.client.readContract({
      address: this.address,
      abi: this.abi,
      functionName: "getAgreement",
      args: [agreementId],
    })) as {
      machineId: Hex;
      status: number;
      startTime: bigint;
      endTime: bigint;
      disputeWindow: bigint;
      cumulativeUnits: bigint;
      lastReadingAt: bigint;
    };
    if (Number(a.status) === 0) {
      this.agreements.set(agreementId, Date.now() + NEGATIVE_TTL_MS);
      return undefined;
    }
    const info: AgreementInfo = {
      machineId: a.machineId.toLowerCase() as Hex,
      status: Number(a.status),
      startTime: BigInt(a.startTime),
      endTime: BigInt(a.endTime),
      closesAt: BigInt(a.endTime) + BigInt(a.disputeWindow),
      cumulativeUnits: BigInt(a.cumulativeUnits),
      lastReadingAt: BigInt(a.lastReadingAt),
    };
    this.agreements.set(agreementId, info);
    return info;
  }

  /** Follows the contract's events from the current block on, dropping what they make stale. */
  async start(pollMs: number): Promise<void> {
    this.fromBlock = (await this.client.getBlockNumber({ cacheTime: 0 })) + 1n;
    const tick = () => {
      this.polling = this.poll()
        .catch(() => {})
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(tick, pollMs);
        });
    };
    this.timer = setTimeout(tick, pollMs);
  }

  async stop(): Promise<void> {
    const timer = this.timer;
    this.timer = undefined;
    if (timer) clearTimeout(timer);
    await this.polling;
  }

  private async poll(): Promise<void> {
    const head = await this.client.getBlockNumber({ cacheTime: 0 });
    if (this.fromBlock === undefined || head < this.fromBlock) return;
    const logs = await this.client.getLogs({
      address: this.address,
      fromBlock: this.fromBlock,
      toBlock: head,
    });
    this.fromBlock = head + 1n;
    const events: ContractEvent[] = [];
    for (const log of logs as Log[]) {
      let decoded: { eventName: string; args: unknown };
      try {
        decoded = decodeEventLog({ abi: this.abi, data: log.data, topics: log.topics }) as never;
      } catch {
        continue;
      }
      const args = (decoded.args ?? {}) as Record<string, unknown>;
      if (MACHINE_EVENTS.has(decoded.eventName) && typeof args.machineId === "string") {
        this.machines.delete(args.machineId.toLowerCase());
      }
      if (AGREEMENT_EVENTS.has(decoded.eventName) && typeof args.agreementId === "bigint") {
        this.agreements.delete(args.agreementId);
      }
      events.push({
        eventName: decoded.eventName,
        args,
        transactionHash: log.transactionHash,
        blockNumber: log.blockNumber,
      });
    }
    if (events.length > 0) this.onEvents(events);
  }
}
