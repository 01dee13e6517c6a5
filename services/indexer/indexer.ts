/**
 * The indexer: follows the contract's events with viem from a start block into the SQL store (the
 * embedded engine by default, PostgreSQL with a URL), as an append-only event log plus the tables
 * the API reads: machines, tariffs, agreements, usage, payouts and direct debits.
 *
 * Restarts resume at the stored cursor. Reorganisations are detected by block hash: the indexer keeps
 * the hashes of the blocks it read, and when one no longer matches the chain it walks back to the
 * last block that does, drops the events after it and rebuilds the tables from the event log.
 */
import { EventEmitter } from "node:events";
import {
  decodeEventLog,
  type Abi,
  type Address,
  type Hex,
  type Log,
  type PublicClient,
} from "viem";
import type { Database, Queryable } from "../shared/db.ts";
import type { Logger } from "../shared/logger.ts";

export const INDEXER_MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS idx_cursor (contract TEXT PRIMARY KEY, next_block BIGINT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS idx_blocks (number BIGINT PRIMARY KEY, hash TEXT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS idx_events (
     block_number BIGINT NOT NULL, log_index INTEGER NOT NULL, tx_hash TEXT NOT NULL, name TEXT NOT NULL,
     agreement_id NUMERIC(78), machine_id TEXT, args JSONB NOT NULL,
     PRIMARY KEY (block_number, log_index))`,
  `CREATE INDEX IF NOT EXISTS idx_events_agreement ON idx_events (agreement_id, block_number)`,
  `CREATE TABLE IF NOT EXISTS idx_machines (
     machine_id TEXT PRIMARY KEY, owner TEXT NOT NULL, payout TEXT NOT NULL, trust_mode INTEGER NOT NULL,
     key_type INTEGER NOT NULL, key_version INTEGER NOT NULL DEFAULT 1, key_revoked BOOLEAN NOT NULL DEFAULT false,
     max_units_per_hour NUMERIC(78) NOT NULL, registered_block BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS idx_machines_owner ON idx_machines (owner)`,
  `CREATE TABLE IF NOT EXISTS idx_tariffs (
     machine_id TEXT NOT NULL, version INTEGER NOT NULL, token TEXT NOT NULL, unit TEXT NOT NULL,
     price NUMERIC(78) NOT NULL, unit_scale NUMERIC(78) NOT NULL, minimum_charge NUMERIC(78) NOT NULL,
     base_fee NUMERIC(78) NOT NULL, period BIGINT NOT NULL, tiers JSONB NOT NULL, published_block BIGINT NOT NULL,
     PRIMARY KEY (machine_id, version))`,
  `CREATE TABLE IF NOT EXISTS idx_agreements (
     agreement_id NUMERIC(78) PRIMARY KEY, machine_id TEXT NOT NULL, lessee TEXT NOT NULL, token TEXT NOT NULL,
     tariff_version INTEGER NOT NULL, deposit NUMERIC(78) NOT NULL, end_time BIGINT NOT NULL,
     status TEXT NOT NULL, cumulative_units NUMERIC(78) NOT NULL DEFAULT 0, total_charged NUMERIC(78) NOT NULL DEFAULT 0,
     escrow NUMERIC(78) NOT NULL, debt NUMERIC(78) NOT NULL DEFAULT 0, mandate_ref TEXT,
     opened_block BIGINT NOT NULL, updated_block BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS idx_agreements_machine ON idx_agreements (machine_id)`,
  `CREATE INDEX IF NOT EXISTS idx_agreements_lessee ON idx_agreements (lessee)`,
  `CREATE TABLE IF NOT EXISTS idx_usage (
     block_number BIGINT NOT NULL, log_index INTEGER NOT NULL, agreement_id NUMERIC(78) NOT NULL,
     machine_id TEXT NOT NULL, cumulative_units NUMERIC(78) NOT NULL, units NUMERIC(78) NOT NULL,
     charge NUMERIC(78) NOT NULL, escrow NUMERIC(78) NOT NULL, debt NUMERIC(78) NOT NULL,
     reading_ts BIGINT NOT NULL, tx_hash TEXT NOT NULL, PRIMARY KEY (block_number, log_index))`,
  `CREATE INDEX IF NOT EXISTS idx_usage_agreement ON idx_usage (agreement_id, reading_ts)`,
  `CREATE TABLE IF NOT EXISTS idx_payouts (
     block_number BIGINT NOT NULL, log_index INTEGER NOT NULL, payee TEXT NOT NULL, token TEXT NOT NULL,
     amount NUMERIC(78) NOT NULL, failed BOOLEAN NOT NULL, tx_hash TEXT NOT NULL,
     PRIMARY KEY (block_number, log_index))`,
  `CREATE INDEX IF NOT EXISTS idx_payouts_payee ON idx_payouts (payee)`,
  `CREATE TABLE IF NOT EXISTS idx_debits (
     debit_id NUMERIC(78) PRIMARY KEY, agreement_id NUMERIC(78) NOT NULL, mandate_ref TEXT NOT NULL,
     token TEXT NOT NULL, amount NUMERIC(78) NOT NULL, due_date BIGINT NOT NULL, status TEXT NOT NULL,
     return_reason TEXT, requested_block BIGINT NOT NULL, updated_block BIGINT NOT NULL)`,
];

/** The derived tables, emptied and rebuilt from the event log after a reorganisation. */
const DERIVED = [
  "idx_machines",
  "idx_tariffs",
  "idx_agreements",
  "idx_usage",
  "idx_payouts",
  "idx_debits",
];

export interface IndexedEvent {
  name: string;
  blockNumber: bigint;
  logIndex: number;
  txHash: Hex;
  agreementId?: string;
  machineId?: string;
  args: Record<string, unknown>;
}

export interface IndexerOptions {
  db: Database;
  client: PublicClient;
  address: Address;
  abi: Abi;
  startBlock?: bigint;
  /** Blocks behind the head the indexer stays; reorganisations deeper than this are still handled. */
  confirmations?: number;
  blockRange?: bigint;
  pollMs?: number;
  log?: Logger;
}

function plain(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function ascii4(code: unknown): string {
  return Buffer.from(String(code).slice(2), "hex").toString("latin1");
}

export class Indexer extends EventEmitter {
  readonly #o: IndexerOptions;
  readonly #contract: string;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;
  #stopped = false;
  /** The newest block the tables reflect. */
  head = -1n;

  private constructor(options: IndexerOptions) {
    super();
    // Every event-stream client listens; there may be many.
    this.setMaxListeners(0);
    this.#o = options;
    this.#contract = options.address.toLowerCase();
  }

  static async open(options: IndexerOptions): Promise<Indexer> {
    await options.db.migrate("indexer", INDEXER_MIGRATIONS);
    return new Indexer(options);
  }

  start(): void {
    const tick = () => {
      if (this.#stopped) return;
      this.#running = this.syncOnce()
        .catch((error: unknown) =>
          this.#o.log?.warn(
            { err: error instanceof Error ? error.message : String(error) },
            "indexer: sync failed; retrying",
          ),
        )
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(tick, this.#o.pollMs ?? 1000);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
  }

  /** Reads new blocks up to the confirmed head; returns how many events it stored. */
  async syncOnce(): Promise<number> {
    const { client, db } = this.#o;
    await this.#handleReorg();
    const latest = await client.getBlockNumber({ cacheTime: 0 });
    const target = latest - BigInt(this.#o.confirmations ?? 0);
    const { rows } = await db.query<{ next_block: string }>(
      "SELECT next_block::text AS next_block FROM idx_cursor WHERE contract = $1",
      [this.#contract],
    );
    let from = rows[0] ? BigInt(rows[0].next_block) : (this.#o.startBlock ?? 0n);
    let stored = 0;
    const range = this.#o.blockRange ?? 2_000n;
    while (from <= target) {
      const to = from + range - 1n < target ? from + range - 1n : target;
      const [logs, block] = await Promise.all([
        client.getLogs({ address: this.#o.address, fromBlock: from, toBlock: to }),
        client.getBlock({ blockNumber: to }),
      ]);
      const events = this.#decode(logs);
      await db.transaction(async (tx) => {
        for (const event of events) {
          await tx.query(
            `INSERT INTO idx_events (block_number, log_index, tx_hash, name, agreement_id, machine_id, args)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
            [
              String(event.blockNumber),
              event.logIndex,
              event.txHash,
              event.name,
              event.agreementId ?? null,
              event.machineId ?? null,
              JSON.stringify(event.args),
            ],
          );
          await applyEvent(tx, event);
        }
        const hashes = new Map<bigint, string>([[to, block.hash]]);
        for (const log of logs) hashes.set(log.blockNumber!, log.blockHash!);
        for (const [number, hash] of hashes) {
          await tx.query(
            "INSERT INTO idx_blocks (number, hash) VALUES ($1, $2) ON CONFLICT (number) DO UPDATE SET hash = EXCLUDED.hash",
            [String(number), hash],
          );
        }
        await tx.query("DELETE FROM idx_blocks WHERE number < $1", [String(to - 1_000n)]);
        await tx.query(
          `INSERT INTO idx_cursor (contract, next_block) VALUES ($1, $2)
           ON CONFLICT (contract) DO UPDATE SET next_block = EXCLUDED.next_block`,
          [this.#contract, String(to + 1n)],
        );
      });
      this.head = to;
      stored += events.length;
      for (const event of events) this.emit("event", event);
      from = to + 1n;
    }
    return stored;
  }

  #decode(logs: Log[]): IndexedEvent[] {
    const out: IndexedEvent[] = [];
    for (const log of logs) {
      let decoded: { eventName: string; args: Record<string, unknown> };
      try {
        decoded = decodeEventLog({ abi: this.#o.abi, data: log.data, topics: log.topics }) as never;
      } catch {
        continue;
      }
      const args = plain(decoded.args) as Record<string, unknown>;
      out.push({
        name: decoded.eventName,
        blockNumber: log.blockNumber!,
        logIndex: log.logIndex!,
        txHash: log.transactionHash!,
        ...(args.agreementId !== undefined ? { agreementId: String(args.agreementId) } : {}),
        ...(args.machineId !== undefined
          ? { machineId: String(args.machineId).toLowerCase() }
          : {}),
        args,
      });
    }
    return out;
  }

  /** Compares the newest stored block hashes with the chain; on a mismatch rolls back and rebuilds. */
  async #handleReorg(): Promise<void> {
    const { db, client } = this.#o;
    const { rows } = await db.query<{ number: string; hash: string }>(
      "SELECT b.number::text AS number, b.hash FROM idx_blocks b ORDER BY b.number DESC LIMIT 64",
    );
    if (rows.length === 0) return;
    const newest = await client
      .getBlock({ blockNumber: BigInt(rows[0]!.number) })
      .catch(() => undefined);
    if (newest?.hash === rows[0]!.hash) return;
    // Walk back to the newest block the chain still has.
    let ancestor = -1n;
    for (const row of rows) {
      const block = await client
        .getBlock({ blockNumber: BigInt(row.number) })
        .catch(() => undefined);
      if (block?.hash === row.hash) {
        ancestor = BigInt(row.number);
        break;
      }
    }
    if (ancestor < 0n) {
      const { rows: oldest } = await db.query<{ number: string }>(
        "SELECT min(number)::text AS number FROM idx_blocks",
      );
      ancestor = BigInt(oldest[0]?.number ?? "0") - 1n;
    }
    this.#o.log?.warn(
      { ancestor: String(ancestor) },
      "indexer: reorganisation; rebuilding from the common block",
    );
    await db.transaction(async (tx) => {
      await tx.query("DELETE FROM idx_events WHERE block_number > $1", [String(ancestor)]);
      await tx.query("DELETE FROM idx_blocks WHERE number > $1", [String(ancestor)]);
      await tx.query("UPDATE idx_cursor SET next_block = $2 WHERE contract = $1", [
        this.#contract,
        String(ancestor + 1n),
      ]);
      for (const table of DERIVED) await tx.query(`DELETE FROM ${table}`);
      const { rows: events } = await tx.query<{
        block_number: string;
        log_index: number;
        tx_hash: Hex;
        name: string;
        agreement_id: string | null;
        machine_id: string | null;
        args: Record<string, unknown> | string;
      }>(
        "SELECT block_number::text AS block_number, log_index, tx_hash, name, agreement_id::text AS agreement_id, machine_id, args FROM idx_events e ORDER BY e.block_number, e.log_index",
      );
      for (const row of events) {
        await applyEvent(tx, {
          name: row.name,
          blockNumber: BigInt(row.block_number),
          logIndex: row.log_index,
          txHash: row.tx_hash,
          ...(row.agreement_id ? { agreementId: row.agreement_id } : {}),
          ...(row.machine_id ? { machineId: row.machine_id } : {}),
          args:
            typeof row.args === "string"
              ? (JSON.parse(row.args) as Record<string, unknown>)
              : row.args,
        });
      }
    });
    this.head = ancestor;
    this.emit("reorg", ancestor);
  }
}

/** Applies one event to the derived tables. The same code indexes and rebuilds. */
export async function applyEvent(tx: Queryable, e: IndexedEvent): Promise<void> {
  const a = e.args as Record<string, string>;
  const block = String(e.blockNumber);
  const lower = (value: unknown) => String(value).toLowerCase();
  switch (e.name) {
    case "MachineRegistered":
      await tx.query(
        `INSERT INTO idx_machines (machine_id, owner, payout, trust_mode, key_type, max_units_per_hour, registered_block)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (machine_id) DO NOTHING`,
        [
          e.machineId,
          lower(a.owner),
          lower(a.payout),
          Number(a.trustMode),
          Number(a.keyType),
          a.maxUnitsPerHour,
          block,
        ],
      );
      break;
    case "DeviceKeyRotated":
      await tx.query(
        "UPDATE idx_machines SET key_type = $2, key_version = $3, key_revoked = false WHERE machine_id = $1",
        [e.machineId, Number(a.keyType), Number(a.keyVersion)],
      );
      break;
    case "DeviceKeyRevoked":
      await tx.query("UPDATE idx_machines SET key_revoked = true WHERE machine_id = $1", [
        e.machineId,
      ]);
      break;
    case "PayoutChanged":
      await tx.query("UPDATE idx_machines SET payout = $2 WHERE machine_id = $1", [
        e.machineId,
        lower(a.payout),
      ]);
      break;
    case "MachineTransferred":
      await tx.query("UPDATE idx_machines SET owner = $2 WHERE machine_id = $1", [
        e.machineId,
        lower(a.to),
      ]);
      break;
    case "TariffPublished":
      await tx.query(
        `INSERT INTO idx_tariffs (machine_id, version, token, unit, price, unit_scale, minimum_charge, base_fee, period, tiers, published_block)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
        [
          e.machineId,
          Number(a.version),
          lower(a.token),
          a.unit,
          a.price,
          a.unitScale,
          a.minimumCharge,
          a.baseFee,
          a.period,
          JSON.stringify(e.args.tiers ?? []),
          block,
        ],
      );
      break;
    case "AgreementOpened":
      await tx.query(
        `INSERT INTO idx_agreements (agreement_id, machine_id, lessee, token, tariff_version, deposit, end_time, status, escrow, opened_block, updated_block)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $6, $8, $8) ON CONFLICT DO NOTHING`,
        [
          e.agreementId,
          e.machineId,
          lower(a.lessee),
          lower(a.token),
          Number(a.tariffVersion),
          a.deposit,
          a.endTime,
          block,
        ],
      );
      break;
    case "UsageRecorded":
      await tx.query(
        `INSERT INTO idx_usage (block_number, log_index, agreement_id, machine_id, cumulative_units, units, charge, escrow, debt, reading_ts, tx_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
        [
          block,
          e.logIndex,
          e.agreementId,
          e.machineId,
          a.cumulativeUnits,
          a.units,
          a.charge,
          a.escrow,
          a.debt,
          a.timestamp,
          e.txHash,
        ],
      );
      await tx.query(
        `UPDATE idx_agreements SET cumulative_units = $2, total_charged = total_charged + $3, escrow = $4, debt = $5, updated_block = $6
         WHERE agreement_id = $1`,
        [e.agreementId, a.cumulativeUnits, a.charge, a.escrow, a.debt, block],
      );
      break;
    case "EscrowToppedUp":
      await tx.query(
        `UPDATE idx_agreements SET escrow = $2, debt = GREATEST(debt - $3, 0), updated_block = $4 WHERE agreement_id = $1`,
        [e.agreementId, a.escrow, a.debtRepaid, block],
      );
      break;
    case "DebtRepaid":
      await tx.query(
        "UPDATE idx_agreements SET debt = $2, updated_block = $3 WHERE agreement_id = $1",
        [e.agreementId, a.debt, block],
      );
      break;
    case "MandateSet":
      await tx.query("UPDATE idx_agreements SET mandate_ref = $2 WHERE agreement_id = $1", [
        e.agreementId,
        lower(a.mandateRef),
      ]);
      break;
    case "AgreementSuspended":
    case "AgreementReinstated":
    case "AgreementEnded":
      await tx.query(
        "UPDATE idx_agreements SET status = $2, updated_block = $3 WHERE agreement_id = $1",
        [
          e.agreementId,
          e.name === "AgreementSuspended"
            ? "suspended"
            : e.name === "AgreementReinstated"
              ? "active"
              : "ended",
          block,
        ],
      );
      break;
    case "AgreementClosed":
      await tx.query(
        "UPDATE idx_agreements SET status = 'closed', escrow = 0, updated_block = $2 WHERE agreement_id = $1",
        [e.agreementId, block],
      );
      break;
    case "EarningsPaid":
    case "PayoutFailed":
      await tx.query(
        `INSERT INTO idx_payouts (block_number, log_index, payee, token, amount, failed, tx_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
        [
          block,
          e.logIndex,
          lower(a.payee),
          lower(a.token),
          a.amount,
          e.name === "PayoutFailed",
          e.txHash,
        ],
      );
      break;
    case "DirectDebitRequested":
      await tx.query(
        `INSERT INTO idx_debits (debit_id, agreement_id, mandate_ref, token, amount, due_date, status, requested_block, updated_block)
         VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $7) ON CONFLICT DO NOTHING`,
        [a.debitId, e.agreementId, lower(a.mandateRef), lower(a.token), a.amount, a.dueDate, block],
      );
      break;
    case "DirectDebitCollected":
      await tx.query(
        "UPDATE idx_debits SET status = 'collected', updated_block = $2 WHERE debit_id = $1",
        [a.debitId, block],
      );
      await tx.query(
        "UPDATE idx_agreements SET debt = GREATEST(debt - $2, 0) WHERE agreement_id = $1",
        [e.agreementId, a.amount],
      );
      break;
    case "DirectDebitReturned":
      await tx.query(
        "UPDATE idx_debits SET status = 'returned', return_reason = $2, updated_block = $3 WHERE debit_id = $1",
        [a.debitId, ascii4(a.reasonCode), block],
      );
      // A refund of a collected debit re-opens the debt.
      if (String(e.args.afterCollection) === "true") {
        await tx.query("UPDATE idx_agreements SET debt = debt + $2 WHERE agreement_id = $1", [
          e.agreementId,
          a.amount,
        ]);
      }
      break;
  }
}
