/**
 * A live projection of the contract's events for the dashboard: agreements with their meter, charges,
 * escrow and debt, and the event stream itself. It follows the chain by polling logs from the
 * deployment block on.
 */
import { EventEmitter } from "node:events";
import {
  createPublicClient,
  decodeEventLog,
  http,
  type Abi,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { payPerUseAbi } from "../shared/artifacts.ts";

export interface AgreementRow {
  agreementId: string;
  machineId: Hex;
  lessee: Address;
  deposit: string;
  cumulativeUnits: string;
  totalCharged: string;
  escrow: string;
  debt: string;
  status: "active" | "low balance" | "exhausted" | "suspended" | "ended" | "closed";
  updatedAt: number;
  /** Recent (time, cumulative units) points for the usage chart. */
  usage: [number, string][];
}

export interface LiveEvent {
  eventName: string;
  agreementId?: string;
  machineId?: string;
  blockNumber: string;
  txHash: Hex | null;
  args: Record<string, string>;
}

export class LiveView extends EventEmitter {
  readonly agreements = new Map<string, AgreementRow>();
  readonly recent: LiveEvent[] = [];
  private readonly client: PublicClient;
  private readonly abi: Abi = payPerUseAbi();
  private next: bigint;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    rpcUrl: string,
    private readonly address: Address,
    fromBlock: bigint,
    private readonly pollMs = 1000,
  ) {
    super();
    this.client = createPublicClient({ transport: http(rpcUrl) }) as PublicClient;
    this.next = fromBlock;
  }

  start(): void {
    const tick = () => {
      this.running = this.poll()
        .catch((error: unknown) => {
          this.emit("error", error);
        })
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.pollMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    const timer = this.timer;
    this.timer = undefined;
    if (timer) clearTimeout(timer);
    await this.running;
  }

  private async poll(): Promise<void> {
    const head = await this.client.getBlockNumber({ cacheTime: 0 });
    if (head < this.next) return;
    const logs = await this.client.getLogs({
      address: this.address,
      fromBlock: this.next,
      toBlock: head,
    });
    this.next = head + 1n;
    for (const log of logs) {
      let decoded: { eventName: string; args: Record<string, unknown> };
      try {
        decoded = decodeEventLog({ abi: this.abi, data: log.data, topics: log.topics }) as never;
      } catch {
        continue;
      }
      const args = Object.fromEntries(
        Object.entries(decoded.args ?? {}).map(([k, v]) => [
          k,
          typeof v === "bigint" ? v.toString() : String(v),
        ]),
      );
      const event: LiveEvent = {
        eventName: decoded.eventName,
        agreementId: args.agreementId,
        machineId: args.machineId,
        blockNumber: (log.blockNumber ?? 0n).toString(),
        txHash: log.transactionHash,
        args,
      };
      this.apply(event);
      this.recent.push(event);
      if (this.recent.length > 200) this.recent.shift();
      this.emit("event", event);
    }
  }

  private apply(e: LiveEvent): void {
    const now = Date.now();
    if (e.eventName === "AgreementOpened" && e.agreementId) {
      this.agreements.set(e.agreementId, {
        agreementId: e.agreementId,
        machineId: e.args.machineId as Hex,
        lessee: e.args.lessee as Address,
        deposit: e.args.deposit!,
        cumulativeUnits: "0",
        totalCharged: "0",
        escrow: e.args.deposit!,
        debt: "0",
        status: "active",
        updatedAt: now,
        usage: [[now, "0"]],
      });
      return;
    }
    const row = e.agreementId ? this.agreements.get(e.agreementId) : undefined;
    if (!row) return;
    row.updatedAt = now;
    switch (e.eventName) {
      case "UsageRecorded":
        row.cumulativeUnits = e.args.cumulativeUnits!;
        row.totalCharged = (BigInt(row.totalCharged) + BigInt(e.args.charge!)).toString();
        row.escrow = e.args.escrow!;
        row.debt = e.args.debt!;
        if (BigInt(row.debt) > 0n && row.status === "active") row.status = "exhausted";
        row.usage.push([now, row.cumulativeUnits]);
        if (row.usage.length > 120) row.usage.shift();
        break;
      case "LowBalance":
        if (row.status === "active") row.status = "low balance";
        break;
      case "EscrowToppedUp":
        row.escrow = e.args.escrow!;
        break;
      case "DirectDebitCollected": {
        const debt = BigInt(row.debt) - BigInt(e.args.amount ?? "0");
        row.debt = (debt > 0n ? debt : 0n).toString();
        break;
      }
      case "AgreementSuspended":
        row.status = "suspended";
        break;
      case "AgreementReinstated":
        row.status = "active";
        break;
      case "AgreementEnded":
        row.status = "ended";
        break;
      case "AgreementClosed":
        row.status = "closed";
        row.escrow = "0";
        break;
    }
  }
}
