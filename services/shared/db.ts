/**
 * One SQL interface in the PostgreSQL dialect for every service: an embedded PostgreSQL (PGlite, no
 * server to install) by default, a PostgreSQL server when a URL is given. Migrations are plain
 * idempotent statements applied in order per service name.
 */
import { mkdirSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";

export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: T[] }>;
}

export interface Database extends Queryable {
  readonly kind: "embedded" | "postgres";
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  migrate(name: string, statements: string[]): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** postgres://… — when absent the embedded engine is used. */
  url?: string;
  /** Data directory of the embedded engine; in memory when absent. */
  dataDir?: string;
}

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  service TEXT NOT NULL, step INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (service, step))`;

async function applyMigrations(db: Database, name: string, statements: string[]): Promise<void> {
  await db.query(MIGRATIONS_TABLE);
  await db.transaction(async (tx) => {
    const { rows } = await tx.query<{ step: number }>(
      "SELECT step FROM schema_migrations WHERE service = $1",
      [name],
    );
    const done = new Set(rows.map((row) => Number(row.step)));
    for (let step = 0; step < statements.length; step++) {
      if (done.has(step)) continue;
      await tx.query(statements[step]!);
      await tx.query("INSERT INTO schema_migrations (service, step) VALUES ($1, $2)", [name, step]);
    }
  });
}

async function openEmbedded(dataDir?: string): Promise<Database> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const engine = new PGlite(dataDir);
  await engine.waitReady;
  const db: Database = {
    kind: "embedded",
    async query(sql, params) {
      const result = await engine.query(sql, params);
      return { rows: result.rows as never[] };
    },
    async transaction(work) {
      return engine.transaction(async (tx) =>
        work({
          async query(sql, params) {
            const result = await tx.query(sql, params);
            return { rows: result.rows as never[] };
          },
        }),
      );
    },
    migrate: (name, statements) => applyMigrations(db, name, statements),
    close: () => engine.close(),
  };
  return db;
}

async function openPostgres(url: string): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: 8 });
  // Fail at start, with the server's own message, rather than on the first query.
  const client = await pool.connect();
  client.release();
  const db: Database = {
    kind: "postgres",
    async query(sql, params) {
      const result = await pool.query(sql, params as unknown[]);
      return { rows: result.rows };
    },
    async transaction(work) {
      const connection = await pool.connect();
      try {
        await connection.query("BEGIN");
        const value = await work({
          async query(sql, params) {
            const result = await connection.query(sql, params as unknown[]);
            return { rows: result.rows };
          },
        });
        await connection.query("COMMIT");
        return value;
      } catch (error) {
        await connection.query("ROLLBACK").catch(() => {});
        throw error;
      } finally {
        connection.release();
      }
    },
    migrate: (name, statements) => applyMigrations(db, name, statements),
    close: () => pool.end(),
  };
  return db;
}

export function openDatabase(options: DatabaseOptions = {}): Promise<Database> {
  return options.url ? openPostgres(options.url) : openEmbedded(options.dataDir);
}
