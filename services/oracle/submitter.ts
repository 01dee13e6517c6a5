/**
 * Takes the newest pending reading per agreement, works out from the chain what is still unsettled,
 * and submits it: device-signed readings as they are (`record`), oracle-attested ones signed by this
 * instance as a batch (`recordAttested`). Each transaction is simulated first; the receipt's events
 * decide which readings settled and which the contract skipped.
 *
 * A transaction that is not mined within `stuckTxMs` is sent again with the same nonce and both fees
 * raised by at least 12.5 %, up to the fee ceiling; whichever version is mined counts. Before each
 * round, settlements of the last `reorgWindowBlocks` blocks are checked against the chain: readings
 * whose transaction left the chain and whose units the chain's meter no longer covers are pending again.
 */
import {
  BaseError,
  BlockNotFoundError,
  TransactionReceiptNotFoundError,
  decodeEventLog,
  encodeFunctionData,
  parseGwei,
  type Abi,
  type Account,
  type Address,
  type Hex,
  type PublicClient,
  type TransactionReceipt,
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
  /** A transaction not mined within this time is sent again with higher fees (default 30 s). */
  stuckTxMs?: number;
  /** Ceiling of maxFeePerGas in gwei, for the first send and every replacement (default 500). */
  maxFeeGwei?: number;
  /** How many blocks settlements are re-checked for (default 64; 0 = never). */
  reorgWindowBlocks?: number;
  /** How often a sent transaction's receipt is looked for (default 1 s). */
  pollMs?: number;
  metrics?: {
    replacements: { inc(): void };
    reorged: { inc(value?: number): void };
  };
  /** True once the service stops: no more replacements, and a transaction still not mined is left. */
  stopping?: () => boolean;
}

interface Fees {
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
}

/** The least raise of a fee that nodes accept for a replacement: 12.5 %, rounded up, at least 1 wei. */
export function raisedFee(fee: bigint): bigint {
  const raise = (fee + 7n) / 8n;
  return fee + (raise > 0n ? raise : 1n);
}

export class Submitter {
  private readonly stuckTxMs: number;
  private readonly maxFeePerGas: bigint;
  private readonly reorgWindowBlocks: bigint;
  private readonly pollMs: number;

  constructor(private readonly o: SubmitterOptions) {
    this.stuckTxMs = o.stuckTxMs ?? 30_000;
    this.maxFeePerGas = parseGwei((o.maxFeeGwei ?? 500).toFixed(9));
    this.reorgWindowBlocks = BigInt(o.reorgWindowBlocks ?? 64);
    this.pollMs = o.pollMs ?? 1_000;
  }

  async submitOnce(): Promise<SubmissionOutcome> {
    const outcome: SubmissionOutcome = { settled: [], skipped: [], gasUsed: 0n };
    await this.recheckSettlements();
    const pending = await this.o.journal.pending(this.o.maxReadings);
    const device: JournalRow[] = [];
    const attested: JournalRow[] = [];
    // The chain's view of every pending agreement, read 25 at a time rather than one after another.
    const agreements: Awaited<ReturnType<ChainState["agreement"]>>[] = [];
    for (let start = 0; start < pending.length; start += 25) {
      agreements.push(
        ...(await Promise.all(
          pending
            .slice(start, start + 25)
            .map((row) => this.o.chain.agreement(row.agreementId, true)),
        )),
      );
    }
    for (const [index, row] of pending.entries()) {
      const agreement = agreements[index];
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
    await this.o.client.simulateContract({
      address: this.o.address,
      abi: this.o.abi,
      functionName,
      args,
      account: this.o.account,
    } as never);
    const data = encodeFunctionData({ abi: this.o.abi, functionName, args } as never);
    // Gas, nonce (from the account's nonce manager) and type are filled in once; replacements reuse them.
    const prepared = (await this.o.wallet.prepareTransactionRequest({
      account: this.o.account,
      chain: this.o.wallet.chain,
      to: this.o.address,
      data,
      ...(await this.initialFees()),
    } as never)) as unknown as PreparedTransaction;
    const receipt = await this.sendUntilMined(prepared);
    const hash = receipt.transactionHash;
    outcome.gasUsed += receipt.gasUsed;
    if (receipt.status !== "success") throw new Error(`submission ${hash} reverted`);
    const block = { number: receipt.blockNumber, hash: receipt.blockHash };
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
        await this.o.journal.markSettled(row.agreementId, row.cumulativeUnits, hash, block);
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
        if (reason === "stale_reading") {
          // Another transaction got there first (a resubmission whose original came back after a
          // reorganisation, or another instance): the chain's meter covers the reading.
          const agreement = await this.o.chain.agreement(row.agreementId, true);
          if (agreement !== undefined && agreement.cumulativeUnits >= row.cumulativeUnits) {
            await this.o.journal.markSettled(row.agreementId, row.cumulativeUnits, null);
            outcome.settled.push({ ...row, txHash: null });
            continue;
          }
        }
        await this.o.journal.markSkipped(row.agreementId, row.cumulativeUnits, reason, hash);
        outcome.skipped.push({ ...row, reason, txHash: hash });
      }
    }
    this.o.log.info(
      { functionName, readings: rows.length, txHash: hash, gasUsed: receipt.gasUsed.toString() },
      "batch submitted",
    );
  }

  /** The node's fee estimate, held under the ceiling. */
  private async initialFees(): Promise<Fees> {
    const estimate = await this.o.client.estimateFeesPerGas();
    let maxFeePerGas = estimate.maxFeePerGas;
    if (maxFeePerGas > this.maxFeePerGas) {
      this.o.log.warn(
        { estimate: maxFeePerGas.toString(), ceiling: this.maxFeePerGas.toString() },
        "fee estimate above the ceiling; sending at the ceiling",
      );
      maxFeePerGas = this.maxFeePerGas;
    }
    const maxPriorityFeePerGas =
      estimate.maxPriorityFeePerGas > maxFeePerGas ? maxFeePerGas : estimate.maxPriorityFeePerGas;
    return { maxFeePerGas, maxPriorityFeePerGas };
  }

  /**
   * Fees for a replacement: both raised by at least 12.5 %, or to the node's current estimate if
   * higher, with maxFeePerGas at most the ceiling. Undefined when the ceiling leaves no valid raise.
   */
  private async replacementFees(current: Fees): Promise<Fees | undefined> {
    const estimate = await this.o.client.estimateFeesPerGas().catch(() => undefined);
    const least = {
      maxFeePerGas: raisedFee(current.maxFeePerGas),
      maxPriorityFeePerGas: raisedFee(current.maxPriorityFeePerGas),
    };
    const max = (a: bigint, b: bigint | undefined) => (b !== undefined && b > a ? b : a);
    let maxFeePerGas = max(least.maxFeePerGas, estimate?.maxFeePerGas);
    if (maxFeePerGas > this.maxFeePerGas) maxFeePerGas = this.maxFeePerGas;
    let maxPriorityFeePerGas = max(least.maxPriorityFeePerGas, estimate?.maxPriorityFeePerGas);
    if (maxPriorityFeePerGas > maxFeePerGas) maxPriorityFeePerGas = maxFeePerGas;
    if (maxFeePerGas < least.maxFeePerGas || maxPriorityFeePerGas < least.maxPriorityFeePerGas) {
      return undefined;
    }
    return { maxFeePerGas, maxPriorityFeePerGas };
  }

  /**
   * Sends the transaction and waits until one of its versions is mined, replacing it with higher
   * fees each time it waited `stuckTxMs` in vain. Returns the mined version's receipt once it has
   * the configured confirmations.
   */
  private async sendUntilMined(prepared: PreparedTransaction): Promise<TransactionReceipt> {
    const { nonce } = prepared;
    let fees: Fees = {
      maxFeePerGas: prepared.maxFeePerGas,
      maxPriorityFeePerGas: prepared.maxPriorityFeePerGas,
    };
    const hashes: Hex[] = [await this.o.wallet.sendTransaction(prepared as never)];
    let replaceAt = Date.now() + this.stuckTxMs;
    let atCeiling = false;
    let giveUpAt: number | undefined;
    for (;;) {
      const mined = await this.minedVersion(hashes);
      if (mined !== undefined) {
        if (this.o.confirmations <= 1) return mined;
        return this.o.client.waitForTransactionReceipt({
          hash: mined.transactionHash,
          confirmations: this.o.confirmations,
          pollingInterval: this.pollMs,
        });
      }
      const now = Date.now();
      if (this.o.stopping?.()) {
        giveUpAt ??= now + this.stuckTxMs;
        if (now >= giveUpAt) {
          throw new Error(
            `stopping while transaction ${hashes.at(-1)} (nonce ${nonce}) is not mined; its readings stay pending`,
          );
        }
      } else if (now >= replaceAt) {
        replaceAt = now + this.stuckTxMs;
        const used = await this.o.client.getTransactionCount({
          address: this.o.account.address,
          blockTag: "latest",
        });
        if (used > nonce) {
          // The nonce is taken: by one of these versions (mined meanwhile) or by another transaction.
          const late = await this.minedVersion(hashes);
          if (late !== undefined) continue;
          throw new Error(
            `nonce ${nonce} was used by another transaction; the readings of ${hashes.at(-1)} stay pending`,
          );
        }
        const raised = atCeiling ? undefined : await this.replacementFees(fees);
        if (raised === undefined) {
          if (!atCeiling) {
            this.o.log.warn(
              {
                txHash: hashes.at(-1),
                nonce,
                maxFeePerGas: fees.maxFeePerGas.toString(),
                ceiling: this.maxFeePerGas.toString(),
              },
              "transaction not mined and the fee ceiling allows no higher fees; waiting for it",
            );
          }
          atCeiling = true;
        } else {
          try {
            const hash = await this.o.wallet.sendTransaction({ ...prepared, ...raised } as never);
            this.o.log.warn(
              {
                nonce,
                replaced: hashes.at(-1),
                txHash: hash,
                maxFeePerGas: raised.maxFeePerGas.toString(),
                maxPriorityFeePerGas: raised.maxPriorityFeePerGas.toString(),
              },
              "transaction not mined in time; replaced with higher fees",
            );
            hashes.push(hash);
            fees = raised;
            this.o.metrics?.replacements.inc();
          } catch (error) {
            // E.g. mined meanwhile ("nonce too low"), or the node wants a larger raise: look again.
            this.o.log.warn(
              { nonce, txHash: hashes.at(-1), err: shortMessage(error) },
              "replacement refused; still waiting for the transaction sent",
            );
          }
        }
      }
      await new Promise((resolve) => setTimeout(resolve, this.pollMs));
    }
  }

  /** The receipt of whichever version is in the chain, if any. */
  private async minedVersion(hashes: Hex[]): Promise<TransactionReceipt | undefined> {
    for (const hash of [...hashes].reverse()) {
      const receipt = await this.o.client.getTransactionReceipt({ hash }).catch(() => undefined);
      if (receipt !== undefined) return receipt;
    }
    return undefined;
  }

  /**
   * Settlements in the last `reorgWindowBlocks` blocks whose block is no longer in the chain: if the
   * transaction is not in the chain elsewhere, its readings that the chain's meter no longer covers
   * go back to pending, to be submitted again in this round.
   */
  private async recheckSettlements(): Promise<void> {
    if (this.reorgWindowBlocks === 0n) return;
    const head = await this.o.client.getBlockNumber({ cacheTime: 0 });
    const from = head >= this.reorgWindowBlocks ? head - this.reorgWindowBlocks + 1n : 0n;
    let reopened = 0;
    let dropped = false;
    for (const settlement of await this.o.journal.settlementsSince(from)) {
      // Only "not found" means gone; any other failure ends the round, to be tried again.
      const canonical = await this.o.client
        .getBlock({ blockNumber: settlement.number })
        .then((block) => block.hash, notFound(BlockNotFoundError));
      // A block still in the chain vouches for every block before it.
      if (canonical !== undefined && canonical === settlement.hash) break;
      const receipt = await this.o.client
        .getTransactionReceipt({ hash: settlement.txHash })
        .catch(notFound(TransactionReceiptNotFoundError));
      if (receipt !== undefined && receipt.status === "success") {
        await this.o.journal.moveSettlement(settlement.txHash, {
          number: receipt.blockNumber,
          hash: receipt.blockHash,
        });
        continue;
      }
      dropped = true;
      for (const agreementId of await this.o.journal.agreementsSettledBy(settlement.txHash)) {
        const agreement = await this.o.chain.agreement(agreementId, true);
        const n = await this.o.journal.reopen(
          agreementId,
          settlement.txHash,
          agreement?.cumulativeUnits ?? 0n,
        );
        reopened += n;
      }
      this.o.log.warn(
        { txHash: settlement.txHash, block: settlement.number.toString() },
        "a settling transaction left the chain (reorganisation); its readings are checked again",
      );
    }
    if (dropped) {
      // The chain forgot this account's transactions: take the next nonce from the node again.
      this.o.account.nonceManager?.reset({
        address: this.o.account.address,
        chainId: Number(this.o.domain.chainId),
      });
    }
    if (reopened > 0) {
      this.o.metrics?.reorged.inc(reopened);
      this.o.log.warn({ readings: reopened }, "readings pending again after a reorganisation");
    }
  }
}

interface PreparedTransaction extends Fees {
  nonce: number;
  gas: bigint;
}

/** A rejection handler that turns the given "not found" error into undefined and rethrows others. */
function notFound(type: new (...args: never[]) => Error) {
  return (error: unknown): undefined => {
    if (error instanceof BaseError && error.walk((e) => e instanceof type)) return undefined;
    throw error;
  };
}

function shortMessage(error: unknown): string {
  const e = error as { details?: string; shortMessage?: string; message?: string };
  return e.details ?? e.shortMessage ?? e.message ?? String(error);
}

function toReading(row: JournalRow): Reading {
  return {
    agreementId: row.agreementId,
    machineId: row.machineId,
    cumulativeUnits: row.cumulativeUnits,
    timestamp: row.timestamp,
  };
}
