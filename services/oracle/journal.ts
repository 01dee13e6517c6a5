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
];

export interface JournalRow {
  agreementId: bigint;
  machineId: Hex;
  cumulativeUnits: bigint;
  timestamp: bigint;
  signature: Hex;
  attested: boolean;
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
    const values: string[] = [];
    const params: unknown[] = [];
    for (const { row } of group) {
      const base = params.length;
      values.push(
        `($${base + 1}, $${base + 2}, $${base + 3}, $${base + 4}, $${base + 5}, $${base + 6})`,
      );
      params.push(
        row.agreementId.toString(),
        row.machineId,
        row.cumulativeUnits.toString(),
        row.timestamp.toString(),
        row.signature,
        row.attested,
      );
    }
    try {
      await this.db.query(
        `INSERT INTO oracle_readings (agreement_id, machine_id, cumulative_units, reading_ts, signature, attested)
         VALUES ${values.join(", ")}`,
        params,
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
      `SELECT cumulative_units::text, reading_ts::text, signature FROM oracle_readings
       WHERE agreement_id = $1 ORDER BY cumulative_units DESC LIMIT 1`,
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
      `SELECT DISTINCT ON (agreement_id) agreement_id::text, machine_id, cumulative_units::text,
              reading_ts::text, signature, attested
       FROM oracle_readings WHERE state = 'pending'
       ORDER BY agreement_id, cumulative_units DESC LIMIT $1`,
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

  /** Everything up to `cumulativeUnits` of an agreement is settled on-chain. */
  async markSettled(
    agreementId: bigint,
    cumulativeUnits: bigint,
    txHash: string | null,
  ): Promise<void> {
    await this.db.query(
      `UPDATE oracle_readings SET state = 'settled', tx_hash = COALESCE($3, tx_hash)
       WHERE agreement_id = $1 AND cumulative_units <= $2 AND state = 'pending'`,
      [agreementId.toString(), cumulativeUnits.toString(), txHash],
    );
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
