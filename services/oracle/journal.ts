/**
 * The durable journal of accepted readings. A reading is acknowledged to the broker only after its row
 * is committed; rows are group-committed (many messages, one INSERT) so durability does not cost a
 * round trip per message.
 */
import type { Hex } from "viem";
import type { Database } from "../shared/db.ts";

export const JOURNAL_MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS oracle_readings (
     id BIGSERIAL PRIMARY KEY,
     agreement_id NUMERIC(78) NOT NULL,
     machine_id TEXT NOT NULL,
     cumulative_units NUMERIC(78) NOT NULL,
     reading_ts BIGINT NOT NULL,
     signature TEXT NOT NULL,
     attested BOOLEAN NOT NULL,
     received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
     state TEXT NOT NULL DEFAULT 'pending',
     tx_hash TEXT,
     reason TEXT)`,
  `CREATE INDEX IF NOT EXISTS oracle_readings_by_agreement
     ON oracle_readings (agreement_id, cumulative_units DESC)`,
  `CREATE INDEX IF NOT EXISTS oracle_readings_pending ON oracle_readings (state) WHERE state = 'pending'`,
  // The block that holds a settling transaction, so that settlements can be re-checked after a reorganisation.
  `ALTER TABLE oracle_readings ADD COLUMN IF NOT EXISTS settled_block NUMERIC(78)`,
  `ALTER TABLE oracle_readings ADD COLUMN IF NOT EXISTS settled_block_hash TEXT`,
  `CREATE INDEX IF NOT EXISTS oracle_readings_by_settled_block
     ON oracle_readings (settled_block) WHERE settled_block IS NOT NULL`,
];

export interface JournalRow {
  agreementId: bigint;
  machineId: Hex;
  cumulativeUnits: bigint;
  timestamp: bigint;
  signature: Hex;
  attested: boolean;
}

export interface SettlementBlock {
  number: bigint;
  hash: Hex;
}

interface Waiting {
  row: JournalRow;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class Journal {
  private queue: Waiting[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;

  constructor(
    private readonly db: Database,
    private readonly maxGroup = 500,
  ) {}

  static async open(db: Database): Promise<Journal> {
    await db.migrate("oracle", JOURNAL_MIGRATIONS);
    return new Journal(db);
  }

  /** Resolves once the row is committed. */
  append(row: JournalRow): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      if (this.queue.length >= this.maxGroup) void this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  async flush(): Promise<void> {
    this.scheduled = false;
    while (this.flushing) await this.flushing;
    if (this.queue.length === 0) return;
    const group = this.queue.splice(0, this.maxGroup);
    this.flushing = this.write(group).finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
    if (this.queue.length > 0) await this.flush();
  }

  private async write(group: Waiting[]): Promise<void> {
    // One statement with six array parameters, whatever the group's size: nothing to plan per row.
    const agreements: string[] = [];
    const machines: string[] = [];
    const units: string[] = [];
    const timestamps: string[] = [];
    const signatures: string[] = [];
    const attested: boolean[] = [];
    for (const { row } of group) {
      agreements.push(row.agreementId.toString());
      machines.push(row.machineId);
      units.push(row.cumulativeUnits.toString());
      timestamps.push(row.timestamp.toString());
      signatures.push(row.signature);
      attested.push(row.attested);
    }
    try {
      await this.db.query(
        `INSERT INTO oracle_readings (agreement_id, machine_id, cumulative_units, reading_ts, signature, attested)
         SELECT * FROM unnest($1::numeric[], $2::text[], $3::numeric[], $4::bigint[], $5::text[], $6::boolean[])`,
        [agreements, machines, units, timestamps, signatures, attested],
      );
      for (const waiting of group) waiting.resolve();
    } catch (error) {
      for (const waiting of group) waiting.reject(error);
    }
  }

  async newest(
    agreementId: bigint,
  ): Promise<{ cumulativeUnits: bigint; timestamp: bigint; signature: string } | undefined> {
    const { rows } = await this.db.query<{
      cumulative_units: string;
      reading_ts: string;
      signature: string;
    }>(
      `SELECT r.cumulative_units::text, r.reading_ts::text, r.signature FROM oracle_readings r
       WHERE r.agreement_id = $1 ORDER BY r.cumulative_units DESC LIMIT 1`,
      [agreementId.toString()],
    );
    const row = rows[0];
    return row
      ? {
          cumulativeUnits: BigInt(row.cumulative_units),
          timestamp: BigInt(row.reading_ts),
          signature: row.signature,
        }
      : undefined;
  }

  /** The newest pending reading of each agreement that has one. */
  async pending(limit: number): Promise<JournalRow[]> {
    const { rows } = await this.db.query<{
      agreement_id: string;
      machine_id: string;
      cumulative_units: string;
      reading_ts: string;
      signature: string;
      attested: boolean;
    }>(
      `SELECT DISTINCT ON (r.agreement_id) r.agreement_id::text, r.machine_id, r.cumulative_units::text,
              r.reading_ts::text, r.signature, r.attested
       FROM oracle_readings r WHERE r.state = 'pending'
       ORDER BY r.agreement_id, r.cumulative_units DESC LIMIT $1`,
      [limit],
    );
    return rows.map((row) => ({
      agreementId: BigInt(row.agreement_id),
      machineId: row.machine_id as Hex,
      cumulativeUnits: BigInt(row.cumulative_units),
      timestamp: BigInt(row.reading_ts),
      signature: row.signature as Hex,
      attested: row.attested,
    }));
  }

  /**
   * Everything up to `cumulativeUnits` of an agreement is settled on-chain; by `txHash` in `block`
   * when this instance's transaction did it.
   */
  async markSettled(
    agreementId: bigint,
    cumulativeUnits: bigint,
    txHash: string | null,
    block?: SettlementBlock,
  ): Promise<void> {
    await this.db.query(
      `UPDATE oracle_readings SET state = 'settled', tx_hash = COALESCE($3, tx_hash),
              settled_block = $4, settled_block_hash = $5
       WHERE agreement_id = $1 AND cumulative_units <= $2 AND state = 'pending'`,
      [
        agreementId.toString(),
        cumulativeUnits.toString(),
        txHash,
        block?.number.toString() ?? null,
        block?.hash ?? null,
      ],
    );
  }

  /** The transactions that settled readings in blocks from `fromBlock` on, newest block first. */
  async settlementsSince(fromBlock: bigint): Promise<(SettlementBlock & { txHash: Hex })[]> {
    const { rows } = await this.db.query<{
      tx_hash: string;
      block_number: string;
      block_hash: string;
    }>(
      `SELECT tx_hash, settled_block::text AS block_number, settled_block_hash AS block_hash
       FROM oracle_readings
       WHERE state = 'settled' AND settled_block >= $1 AND tx_hash IS NOT NULL
       GROUP BY tx_hash, settled_block, settled_block_hash
       ORDER BY settled_block DESC`,
      [fromBlock.toString()],
    );
    return rows.map((row) => ({
      txHash: row.tx_hash as Hex,
      number: BigInt(row.block_number),
      hash: row.block_hash as Hex,
    }));
  }

  /** The agreements whose readings `txHash` settled. */
  async agreementsSettledBy(txHash: Hex): Promise<bigint[]> {
    const { rows } = await this.db.query<{ agreement_id: string }>(
      `SELECT DISTINCT agreement_id::text FROM oracle_readings
       WHERE tx_hash = $1 AND state = 'settled'`,
      [txHash],
    );
    return rows.map((row) => BigInt(row.agreement_id));
  }

  /** The transaction was mined again, in another block. */
  async moveSettlement(txHash: Hex, block: SettlementBlock): Promise<void> {
    await this.db.query(
      `UPDATE oracle_readings SET settled_block = $2, settled_block_hash = $3
       WHERE tx_hash = $1 AND state = 'settled'`,
      [txHash, block.number.toString(), block.hash],
    );
  }

  /**
   * `txHash` is no longer in the chain: the agreement's readings it settled above the chain's meter
   * (`onChainUnits`) are pending again; those at or below it stay settled, by whatever put the
   * meter there. Returns how many readings went back to pending.
   */
  async reopen(agreementId: bigint, txHash: Hex, onChainUnits: bigint): Promise<number> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query(
        `UPDATE oracle_readings
         SET state = 'pending', tx_hash = NULL, settled_block = NULL, settled_block_hash = NULL
         WHERE agreement_id = $1 AND tx_hash = $2 AND state = 'settled' AND cumulative_units > $3
         RETURNING id`,
        [agreementId.toString(), txHash, onChainUnits.toString()],
      );
      await tx.query(
        `UPDATE oracle_readings SET tx_hash = NULL, settled_block = NULL, settled_block_hash = NULL
         WHERE agreement_id = $1 AND tx_hash = $2 AND state = 'settled'`,
        [agreementId.toString(), txHash],
      );
      return rows.length;
    });
  }

  async markSkipped(
    agreementId: bigint,
    cumulativeUnits: bigint,
    reason: string,
    txHash: string | null,
  ): Promise<void> {
    await this.db.query(
      `UPDATE oracle_readings SET state = 'skipped', reason = $3, tx_hash = $4
       WHERE agreement_id = $1 AND cumulative_units <= $2 AND state = 'pending'`,
      [agreementId.toString(), cumulativeUnits.toString(), reason, txHash],
    );
  }
}
