/**
 * Takes the newest pending reading per agreement, works out from the chain what is still unsettled,
 * and submits it: device-signed readings as they are (`record`), oracle-attested ones signed by this
 * instance as a batch (`recordAttested`). Each transaction is simulated first; the receipt's events
 * decide which readings settled and which the contract skipped.
 */
import {
  decodeEventLog,
  type Abi,
  type Account,
  type Address,
  type Hex,
  type PublicClient,
  type WalletClient,
} from "viem";
import { readingBatchDigest, type Reading, type ReadingDomain } from "../shared/eip712.ts";
import type { RejectReason } from "../shared/protocol.ts";
import { signDigestSecp256k1 } from "../shared/signatures.ts";
import type { Logger } from "../shared/logger.ts";
import type { ChainState } from "./chain-state.ts";
import type { Journal, JournalRow } from "./journal.ts";

/** SkipReason (contract enum order) → the protocol's reason code. */
export const SKIP_REASONS: RejectReason[] = [
  "unknown_agreement",
  "agreement_machine_mismatch",
  "wrong_trust_mode",
  "agreement_inactive",
  "key_revoked",
  "bad_signature",
  "stale_reading",
  "before_agreement_start",
  "agreement_inactive",
  "agreement_inactive",
  "future_timestamp",
];

export interface SubmissionOutcome {
  settled: {
    machineId: Hex;
    agreementId: bigint;
    cumulativeUnits: bigint;
    txHash: Hex | null;
    escrow?: bigint;
    debt?: bigint;
  }[];
  skipped: {
    machineId: Hex;
    agreementId: bigint;
    cumulativeUnits: bigint;
    reason: RejectReason;
    txHash: Hex;
  }[];
  gasUsed: bigint;
}

export interface SubmitterOptions {
  client: PublicClient;
  wallet: WalletClient;
  account: Account;
  address: Address;
  abi: Abi;
  domain: ReadingDomain;
  privateKey: Hex;
  journal: Journal;
  chain: ChainState;
  maxReadings: number;
  confirmations: number;
  log: Logger;
}

export class Submitter {
  constructor(private readonly o: SubmitterOptions) {}

  async submitOnce(): Promise<SubmissionOutcome> {
    const outcome: SubmissionOutcome = { settled: [], skipped: [], gasUsed: 0n };
    const pending = await this.o.journal.pending(this.o.maxReadings);
    const device: JournalRow[] = [];
    const attested: JournalRow[] = [];
    for (const row of pending) {
      const agreement = await this.o.chain.agreement(row.agreementId, true);
      if (agreement !== undefined && agreement.cumulativeUnits >= row.cumulativeUnits) {
        // Already on-chain (an earlier submission, another instance, or before a restart).
        await this.o.journal.markSettled(row.agreementId, row.cumulativeUnits, null);
        outcome.settled.push({ ...row, txHash: null });
        continue;
      }
      (row.attested ? attested : device).push(row);
    }
    if (device.length > 0) {
      await this.send(
        "record",
        [device.map((row) => ({ reading: toReading(row), signature: row.signature }))],
        device,
        outcome,
      );
    }
    if (attested.length > 0) {
      const readings = attested.map(toReading);
      const signature = signDigestSecp256k1(
        readingBatchDigest(this.o.domain, readings),
        this.o.privateKey,
      );
      await this.send("recordAttested", [readings, [signature]], attested, outcome);
    }
    return outcome;
  }

  private async send(
    functionName: string,
    args: unknown[],
    rows: JournalRow[],
    outcome: SubmissionOutcome,
  ) {
    const { request } = await this.o.client.simulateContract({
      address: this.o.address,
      abi: this.o.abi,
      functionName,
      args,
      account: this.o.account,
    } as never);
    const hash = await this.o.wallet.writeContract(request as never);
    const receipt = await this.o.client.waitForTransactionReceipt({
      hash,
      confirmations: this.o.confirmations,
    });
    outcome.gasUsed += receipt.gasUsed;
    if (receipt.status !== "success") throw new Error(`submission ${hash} reverted`);
    const byAgreement = new Map(rows.map((row) => [row.agreementId, row]));
    for (const log of receipt.logs) {
      if (log.address.toLowerCase() !== this.o.address.toLowerCase()) continue;
      let event: { eventName: string; args: Record<string, unknown> };
      try {
        event = decodeEventLog({ abi: this.o.abi, data: log.data, topics: log.topics }) as never;
      } catch {
        continue;
      }
      const agreementId = event.args.agreementId as bigint | undefined;
      const row = agreementId === undefined ? undefined : byAgreement.get(agreementId);
      if (row === undefined) continue;
      if (event.eventName === "UsageRecorded") {
        await this.o.journal.markSettled(row.agreementId, row.cumulativeUnits, hash);
        outcome.settled.push({
          machineId: row.machineId,
          agreementId: row.agreementId,
          cumulativeUnits: row.cumulativeUnits,
          txHash: hash,
          escrow: event.args.escrow as bigint,
          debt: event.args.debt as bigint,
        });
      } else if (event.eventName === "ReadingSkipped") {
        const reason = SKIP_REASONS[Number(event.args.reason)] ?? "internal_error";
        await this.o.journal.markSkipped(row.agreementId, row.cumulativeUnits, reason, hash);
        outcome.skipped.push({ ...row, reason, txHash: hash });
      }
    }
    this.o.log.info(
      { functionName, readings: rows.length, txHash: hash, gasUsed: receipt.gasUsed.toString() },
      "batch submitted",
    );
  }
}

function toReading(row: JournalRow): Reading {
  return {
    agreementId: row.agreementId,
    machineId: row.machineId,
    cumulativeUnits: row.cumulativeUnits,
    timestamp: row.timestamp,
  };
}
