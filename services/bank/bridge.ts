/**
 * The bank bridge: mandates kept off-chain, direct-debit requests followed from the chain's
 * events, pain.008 files written for the open ones, and camt.054 notifications brought back
 * on-chain as confirmed collections and reported returns.
 *
 * Crash safety: an export is planned and committed to the database before its file is written,
 * and a file that was planned but not written is written again, identically, on the next run. An
 * import records its actions before it sends a transaction, checks the chain's status of each
 * debit before acting, and resumes where it stopped when the same file is imported again.
 */
import { createHash } from "node:crypto";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Address, Hex } from "viem";
import type { Database, Queryable } from "../shared/db.ts";
import { ConflictError, NotFoundError, ValidationError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { berlinDate, collectionDate, type IsoDate } from "./calendar.ts";
import { parseCamt054, type StatementTransaction } from "./camt054.ts";
import type { BankChain } from "./chain.ts";
import { prepareMandate, type Mandate, type PostalAddress } from "./mandates.ts";
import {
  renderPain008,
  type DirectDebitTransaction,
  type Pain008Document,
  type PaymentInformation,
  type SequenceType,
} from "./pain008.ts";
import { formatCents, MAX_CENTS, MIN_CENTS, tokenUnitsToCents } from "./sepa.ts";
import { validateXsd } from "./xsd.ts";

export const BANK_MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS bank_mandates (
     mandate_ref TEXT PRIMARY KEY,
     creditor_id TEXT NOT NULL,
     mandate_id TEXT NOT NULL,
     signed_on TEXT NOT NULL,
     debtor_name TEXT NOT NULL,
     iban TEXT NOT NULL,
     bic TEXT,
     address JSONB NOT NULL,
     kind TEXT NOT NULL,
     salt TEXT NOT NULL,
     revoked_at TIMESTAMPTZ,
     first_presented TEXT,
     last_presented TEXT,
     created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
     UNIQUE (creditor_id, mandate_id))`,
  `CREATE TABLE IF NOT EXISTS bank_cursor (
     contract TEXT PRIMARY KEY, next_block BIGINT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS bank_exports (
     id SERIAL PRIMARY KEY,
     message_id TEXT NOT NULL UNIQUE,
     created_at TIMESTAMPTZ NOT NULL,
     path TEXT NOT NULL,
     debits INTEGER NOT NULL,
     control_cents BIGINT NOT NULL,
     written_at TIMESTAMPTZ,
     sha256 TEXT)`,
  `CREATE TABLE IF NOT EXISTS bank_debits (
     contract TEXT NOT NULL,
     debit_id BIGINT NOT NULL,
     agreement_id NUMERIC(78) NOT NULL,
     mandate_ref TEXT NOT NULL,
     token TEXT NOT NULL,
     token_decimals INTEGER NOT NULL,
     amount NUMERIC(78) NOT NULL,
     due_at TIMESTAMPTZ NOT NULL,
     block_number BIGINT NOT NULL,
     tx_hash TEXT NOT NULL,
     chain_status TEXT NOT NULL DEFAULT 'requested',
     state TEXT NOT NULL DEFAULT 'open',
     problem TEXT,
     export_id INTEGER REFERENCES bank_exports(id),
     end_to_end_id TEXT UNIQUE,
     cents BIGINT,
     sequence_type TEXT,
     collection_date TEXT,
     collected_on TEXT,
     returned_on TEXT,
     return_reason TEXT,
     PRIMARY KEY (contract, debit_id))`,
  `CREATE INDEX IF NOT EXISTS bank_debits_open ON bank_debits (state) WHERE state = 'open'`,
  `CREATE INDEX IF NOT EXISTS bank_debits_export ON bank_debits (export_id)`,
  `CREATE TABLE IF NOT EXISTS bank_imports (
     sha256 TEXT PRIMARY KEY,
     message_id TEXT NOT NULL UNIQUE,
     version TEXT NOT NULL,
     name TEXT NOT NULL,
     started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
     completed_at TIMESTAMPTZ,
     report JSONB)`,
  `CREATE TABLE IF NOT EXISTS bank_import_actions (
     import_sha256 TEXT NOT NULL REFERENCES bank_imports(sha256),
     seq INTEGER NOT NULL,
     debit_id BIGINT NOT NULL,
     action TEXT NOT NULL,
     reason_code TEXT,
     booking_date TEXT,
     tx_hash TEXT,
     outcome TEXT,
     PRIMARY KEY (import_sha256, seq))`,
];

export interface Creditor {
  name: string;
  iban: string;
  bic?: string;
  creditorId: string;
  address: PostalAddress;
}

export interface BankBridgeOptions {
  db: Database;
  /** Needed to follow requests and to import statements; exports work from what was synced. */
  chain?: BankChain;
  /** The contract whose debits this store holds (taken from the chain when one is given). */
  contract?: Address;
  creditor: Creditor;
  /** Tokens denominated in euro; debits in any other token are not exported. */
  eurTokens: Address[];
  /** TARGET2 business days between handing a file to the bank and its collection date (D-1). */
  leadDays?: number;
  outDir: string;
  startBlock?: bigint;
  /** Blocks to wait before a request counts; 0 follows the head. */
  confirmations?: number;
  /** Largest block range per log query. */
  blockRange?: bigint;
  /** Validate every written file against the ISO schema (libxml2). */
  validateSchema?: boolean;
  logger?: Logger;
  now?: () => Date;
}

export interface SyncReport {
  fromBlock: string;
  toBlock: string;
  requested: number;
  collected: number;
  returned: number;
}

export interface ExportReport {
  /** Absent when there was nothing to export. */
  file?: string;
  messageId?: string;
  debits: number;
  controlSum: string;
  batches: {
    collectionDate: IsoDate;
    sequenceType: SequenceType;
    debits: number;
    controlSum: string;
  }[];
  skipped: { debitId: string; reason: string }[];
  schema?: string;
  /** Files planned before an interruption and written now, identical to what was planned. */
  recovered?: string[];
}

export interface ImportReport {
  messageId: string;
  version: string;
  collected: { debitId: string; endToEndId: string; amount: string; tx?: string }[];
  returned: {
    debitId: string;
    endToEndId: string;
    amount: string;
    reasonCode: string;
    afterCollection: boolean;
    tx?: string;
  }[];
  alreadyApplied: string[];
  ignored: string[];
  warnings: string[];
  resumed: boolean;
}

interface DebitRow {
  debit_id: string;
  agreement_id: string;
  mandate_ref: string;
  token: string;
  token_decimals: number;
  amount: string;
  due_at: string | Date;
  state: string;
  chain_status: string;
  end_to_end_id: string | null;
  cents: string | null;
  collected_on: string | null;
}

interface MandateRow {
  mandate_ref: string;
  creditor_id: string;
  mandate_id: string;
  signed_on: string;
  debtor_name: string;
  iban: string;
  bic: string | null;
  address: PostalAddress | string;
  kind: string;
  salt: string;
  revoked_at: string | null;
  first_presented: string | null;
  last_presented: string | null;
}

/** A debit in an export with its mandate: what one transaction of the file is written from. */
type ExportRow = MandateRow & {
  debit_id: string;
  agreement_id: string;
  end_to_end_id: string;
  cents: string;
  sequence_type: SequenceType;
  collection_date: IsoDate;
};

function compare<T extends string | bigint>(a: T, b: T): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A mandate lapses when no collection was presented under it for 36 months. */
const MANDATE_LAPSE_MONTHS = 36;

function monthsAfter(date: IsoDate, months: number): IsoDate {
  const [year, month, day] = date.split("-").map(Number) as [number, number, number];
  const total = year * 12 + (month - 1) + months;
  return `${Math.floor(total / 12)}-${String((total % 12) + 1).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
}

function daysBetween(from: IsoDate, to: IsoDate): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000);
}

function rowToMandate(row: MandateRow): Mandate & { revokedAt?: string } {
  const address =
    typeof row.address === "string" ? (JSON.parse(row.address) as PostalAddress) : row.address;
  return {
    mandateRef: row.mandate_ref as Hex,
    creditorId: row.creditor_id,
    mandateId: row.mandate_id,
    signedOn: row.signed_on,
    debtorName: row.debtor_name,
    iban: row.iban,
    ...(row.bic ? { bic: row.bic } : {}),
    address,
    kind: row.kind as Mandate["kind"],
    salt: row.salt as Hex,
    ...(row.revoked_at ? { revokedAt: String(row.revoked_at) } : {}),
  };
}

/** The end-to-end id of a debit: unique per contract (its first 8 hex digits) and debit, at most 35 characters. */
export function endToEndId(contract: string, debitId: bigint | string): string {
  return `PPU-${contract.slice(2, 10).toUpperCase()}-${debitId}`;
}

/** Refund windows of the SEPA Core rulebook, counted from the collection's booking. */
const REFUND_DAYS_AUTHORISED = 56;
const REFUND_DAYS_UNAUTHORISED = 396;
/** Reason codes of refunds claimed as unauthorised (no valid mandate). */
const UNAUTHORISED_REASONS = new Set(["MD01"]);

export class BankBridge {
  readonly #db: Database;
  readonly #chain?: BankChain;
  readonly #options: BankBridgeOptions;
  readonly #contract: string;
  readonly #eurTokens: Set<string>;
  readonly #now: () => Date;

  constructor(options: BankBridgeOptions) {
    this.#db = options.db;
    this.#chain = options.chain;
    this.#options = options;
    const contract = options.chain?.contract ?? options.contract;
    if (!contract) throw new ValidationError("the bank bridge needs the contract address");
    this.#contract = contract.toLowerCase();
    this.#eurTokens = new Set(options.eurTokens.map((token) => token.toLowerCase()));
    this.#now = options.now ?? (() => new Date());
  }

  static async open(options: BankBridgeOptions): Promise<BankBridge> {
    await options.db.migrate("bank", BANK_MIGRATIONS);
    return new BankBridge(options);
  }

  // ---------------------------------------------------------------------------------------------
  // Mandates

  /** Validates and stores a mandate; returns it with the reference the lessee attaches on-chain. */
  async addMandate(input: unknown): Promise<Mandate> {
    const [mandate] = await this.addMandates([input]);
    return mandate!;
  }

  /**
   * Validates and stores several mandates at once; when one is invalid or already registered,
   * none is stored and the error names every problem.
   */
  async addMandates(inputs: unknown[]): Promise<Mandate[]> {
    const today = berlinDate(this.#now());
    const problems: string[] = [];
    const mandates: Mandate[] = [];
    const seen = new Set<string>();
    for (const [index, input] of inputs.entries()) {
      try {
        const mandate = prepareMandate(input, this.#options.creditor.creditorId, { today });
        if (seen.has(mandate.mandateId))
          throw new ValidationError(`mandate ${mandate.mandateId} appears twice`);
        seen.add(mandate.mandateId);
        mandates.push(mandate);
      } catch (error) {
        const prefix = inputs.length > 1 ? `#${index + 1}: ` : "";
        const details = (error as ValidationError).details;
        problems.push(
          `${prefix}${(error as ValidationError).shortMessage ?? (error as Error).message}${details ? `: ${details}` : ""}`,
        );
      }
    }
    if (problems.length > 0) {
      throw new ValidationError(
        inputs.length > 1
          ? `${problems.length} of ${inputs.length} mandates are not valid; none was stored`
          : problems[0]!,
        inputs.length > 1 ? { details: problems.slice(0, 20).join("\n") } : {},
      );
    }
    const { rows: existing } = await this.#db.query<{ mandate_id: string }>(
      "SELECT mandate_id FROM bank_mandates WHERE creditor_id = $1 AND mandate_id = ANY($2::text[])",
      [this.#options.creditor.creditorId, mandates.map((m) => m.mandateId)],
    );
    if (existing.length > 0) {
      throw new ConflictError(
        `mandate${existing.length > 1 ? "s" : ""} ${existing
          .map((r) => r.mandate_id)
          .slice(0, 10)
          .join(", ")} already registered; nothing was stored`,
      );
    }
    const column = <K extends keyof Mandate>(key: K) => mandates.map((m) => m[key] ?? null);
    await this.#db.query(
      `INSERT INTO bank_mandates (mandate_ref, creditor_id, mandate_id, signed_on, debtor_name, iban, bic, address, kind, salt)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::text[], $10::text[])`,
      [
        column("mandateRef"),
        column("creditorId"),
        column("mandateId"),
        column("signedOn"),
        column("debtorName"),
        column("iban"),
        column("bic"),
        mandates.map((m) => JSON.stringify(m.address)),
        column("kind"),
        column("salt"),
      ],
    );
    for (const mandate of mandates) {
      this.#options.logger?.info(
        { mandateId: mandate.mandateId, mandateRef: mandate.mandateRef },
        "mandate added",
      );
    }
    return mandates;
  }

  async mandates(): Promise<(Mandate & { revokedAt?: string })[]> {
    const { rows } = await this.#db.query<MandateRow>(
      "SELECT * FROM bank_mandates ORDER BY created_at, mandate_id",
    );
    return rows.map(rowToMandate);
  }

  async mandate(mandateIdOrRef: string): Promise<Mandate & { revokedAt?: string }> {
    const { rows } = await this.#db.query<MandateRow>(
      "SELECT * FROM bank_mandates WHERE mandate_id = $1 OR mandate_ref = $2",
      [mandateIdOrRef, mandateIdOrRef.toLowerCase()],
    );
    if (rows.length === 0) throw new NotFoundError(`no mandate ${mandateIdOrRef}`);
    return rowToMandate(rows[0]!);
  }

  /** Marks a mandate revoked: its open debits are no longer exported. */
  async revokeMandate(mandateIdOrRef: string): Promise<Mandate> {
    const mandate = await this.mandate(mandateIdOrRef);
    await this.#db.query("UPDATE bank_mandates SET revoked_at = now() WHERE mandate_ref = $1", [
      mandate.mandateRef,
    ]);
    return mandate;
  }

  // ---------------------------------------------------------------------------------------------
  // Chain events

  /** Reads direct-debit events from the last position up to the confirmed head. */
  async sync(onProgress?: (done: bigint, total: bigint) => void): Promise<SyncReport> {
    const chain = this.#requireChain();
    const head = await chain.head();
    const confirmed = head - BigInt(this.#options.confirmations ?? 0);
    const { rows } = await this.#db.query<{ next_block: string }>(
      "SELECT next_block::text AS next_block FROM bank_cursor WHERE contract = $1",
      [this.#contract],
    );
    const from = rows[0] ? BigInt(rows[0].next_block) : (this.#options.startBlock ?? 0n);
    const report: SyncReport = {
      fromBlock: String(from),
      toBlock: String(confirmed),
      requested: 0,
      collected: 0,
      returned: 0,
    };
    const range = this.#options.blockRange ?? 5_000n;
    for (let start = from; start <= confirmed; start += range) {
      const end = start + range - 1n < confirmed ? start + range - 1n : confirmed;
      const events = await chain.events(start, end);
      const decimals = new Map<string, number>();
      for (const event of events) {
        if (event.kind === "requested" && !decimals.has(event.token)) {
          decimals.set(event.token, await chain.tokenDecimals(event.token));
        }
      }
      await this.#db.transaction(async (tx) => {
        for (const event of events) {
          if (event.kind === "requested") {
            await tx.query(
              `INSERT INTO bank_debits (contract, debit_id, agreement_id, mandate_ref, token, token_decimals, amount, due_at, block_number, tx_hash)
               VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8), $9, $10) ON CONFLICT DO NOTHING`,
              [
                this.#contract,
                String(event.debitId),
                String(event.agreementId),
                event.mandateRef.toLowerCase(),
                event.token.toLowerCase(),
                decimals.get(event.token),
                String(event.amount),
                Number(event.dueDate),
                String(event.blockNumber),
                event.txHash,
              ],
            );
            report.requested += 1;
          } else {
            await tx.query(
              "UPDATE bank_debits SET chain_status = $3 WHERE contract = $1 AND debit_id = $2",
              [this.#contract, String(event.debitId), event.kind],
            );
            report[event.kind] += 1;
          }
        }
        await tx.query(
          `INSERT INTO bank_cursor (contract, next_block) VALUES ($1, $2)
           ON CONFLICT (contract) DO UPDATE SET next_block = EXCLUDED.next_block`,
          [this.#contract, String(end + 1n)],
        );
      });
      onProgress?.(end - from + 1n, confirmed - from + 1n);
    }
    return report;
  }

  /** Stores a request as the chain reported it (sync does this; the benchmark and tests call it directly). */
  async recordRequest(request: {
    debitId: bigint;
    agreementId: bigint;
    mandateRef: Hex;
    token: Address;
    tokenDecimals: number;
    amount: bigint;
    dueDate: bigint;
  }): Promise<void> {
    await this.recordRequests([request]);
  }

  async recordRequests(
    requests: {
      debitId: bigint;
      agreementId: bigint;
      mandateRef: Hex;
      token: Address;
      tokenDecimals: number;
      amount: bigint;
      dueDate: bigint;
    }[],
  ): Promise<void> {
    await this.#db.query(
      `INSERT INTO bank_debits (contract, debit_id, agreement_id, mandate_ref, token, token_decimals, amount, due_at, block_number, tx_hash)
       SELECT $1, d, a, m, t, dec, amt, to_timestamp(due), 0, '' FROM
         unnest($2::bigint[], $3::numeric[], $4::text[], $5::text[], $6::int[], $7::numeric[], $8::bigint[]) AS x(d, a, m, t, dec, amt, due)
       ON CONFLICT DO NOTHING`,
      [
        this.#contract,
        requests.map((r) => String(r.debitId)),
        requests.map((r) => String(r.agreementId)),
        requests.map((r) => r.mandateRef.toLowerCase()),
        requests.map((r) => r.token.toLowerCase()),
        requests.map((r) => r.tokenDecimals),
        requests.map((r) => String(r.amount)),
        requests.map((r) => String(r.dueDate)),
      ],
    );
  }

  async debits(filter: { state?: string } = {}): Promise<Record<string, unknown>[]> {
    const { rows } = await this.#db.query(
      `SELECT debit_id::text, agreement_id::text, mandate_ref, token, amount::text, due_at, chain_status, state, problem,
              end_to_end_id, cents::text, sequence_type, collection_date, collected_on, returned_on, return_reason
       FROM bank_debits WHERE contract = $1 AND ($2::text IS NULL OR state = $2) ORDER BY bank_debits.debit_id`,
      [this.#contract, filter.state ?? null],
    );
    return rows;
  }

  // ---------------------------------------------------------------------------------------------
  // pain.008 export

  /**
   * Writes one pain.008 file for every open request that can be collected, grouped per collection
   * date and sequence type. Requests that cannot (no mandate, revoked or lapsed mandate, a token that
   * is not euro, an amount outside the scheme's limits) stay open and are listed with the reason.
   */
  async exportBatch(): Promise<ExportReport> {
    const recovered = await this.#writePending();
    const now = this.#now();
    const today = berlinDate(now);
    const lead = this.#options.leadDays ?? 1;
    const { rows } = await this.#db.query<DebitRow & MandateRow & { has_mandate: boolean }>(
      `SELECT d.debit_id::text AS debit_id, d.agreement_id::text AS agreement_id, d.mandate_ref, d.token, d.token_decimals,
              d.amount::text AS amount, d.due_at, d.state, d.chain_status, m.mandate_ref IS NOT NULL AS has_mandate,
              m.creditor_id, m.mandate_id, m.kind, m.revoked_at, m.signed_on, m.first_presented, m.last_presented,
              m.debtor_name, m.iban, m.bic, m.address::text AS address, m.salt
       FROM bank_debits d LEFT JOIN bank_mandates m ON m.mandate_ref = d.mandate_ref
       WHERE d.contract = $1 AND d.state = 'open' AND d.chain_status = 'requested'
       ORDER BY d.debit_id`,
      [this.#contract],
    );

    const skipped: ExportReport["skipped"] = [];
    const planned: ExportRow[] = [];
    const firstInBatch = new Set<string>();
    for (const row of rows) {
      const skip = (reason: string) => skipped.push({ debitId: row.debit_id, reason });
      if (!row.has_mandate) {
        skip(`no mandate is registered for reference ${row.mandate_ref}`);
        continue;
      }
      if (row.revoked_at) {
        skip(`mandate ${row.mandate_id} is revoked`);
        continue;
      }
      if (!this.#eurTokens.has(row.token)) {
        skip(`token ${row.token} is not a euro token (see BANK_EUR_TOKENS)`);
        continue;
      }
      const cents = tokenUnitsToCents(BigInt(row.amount), row.token_decimals);
      if (cents < MIN_CENTS || cents > MAX_CENTS) {
        skip(
          `amount ${formatCents(cents)} EUR is outside the scheme's limits of 0.01 to 999999999.99`,
        );
        continue;
      }
      const lastPresented = row.last_presented ?? row.signed_on;
      if (monthsAfter(lastPresented, MANDATE_LAPSE_MONTHS) < today) {
        skip(
          `mandate ${row.mandate_id} lapsed: nothing was collected under it for 36 months (since ${lastPresented})`,
        );
        continue;
      }
      let sequenceType: SequenceType;
      if (row.kind === "oneoff") {
        if (row.first_presented || firstInBatch.has(row.mandate_ref)) {
          skip(`one-off mandate ${row.mandate_id} was already used`);
          continue;
        }
        sequenceType = "OOFF";
      } else {
        sequenceType = row.first_presented || firstInBatch.has(row.mandate_ref) ? "RCUR" : "FRST";
      }
      firstInBatch.add(row.mandate_ref);
      const dueAt = row.due_at instanceof Date ? row.due_at : new Date(row.due_at);
      planned.push({
        ...row,
        end_to_end_id: endToEndId(this.#contract, row.debit_id),
        cents: String(cents),
        sequence_type: sequenceType,
        collection_date: collectionDate(dueAt, now, lead),
      });
    }

    await this.#db.query(
      "UPDATE bank_debits SET problem = x.reason FROM unnest($2::bigint[], $3::text[]) AS x(id, reason) WHERE contract = $1 AND debit_id = x.id",
      [this.#contract, skipped.map((s) => s.debitId), skipped.map((s) => s.reason)],
    );
    if (planned.length === 0) {
      return {
        debits: 0,
        controlSum: "0.00",
        batches: [],
        skipped,
        ...(recovered.length ? { recovered } : {}),
      };
    }

    // Plan: commit the file's contents (ids, amounts, dates) before writing it.
    const stamp = now.toISOString().replace(/\D/g, "").slice(0, 14);
    const exportId = await this.#db.transaction(async (tx) => {
      const { rows: idRows } = await tx.query<{ id: number }>(
        "SELECT nextval(pg_get_serial_sequence('bank_exports', 'id'))::int AS id",
      );
      const id = idRows[0]!.id;
      const messageId = `PPU-${stamp}-${String(id).padStart(6, "0")}`;
      const path = join(resolve(this.#options.outDir), `pain.008-${messageId}.xml`);
      let control = 0n;
      for (const p of planned) control += BigInt(p.cents);
      await tx.query(
        "INSERT INTO bank_exports (id, message_id, created_at, path, debits, control_cents) VALUES ($1, $2, $3, $4, $5, $6)",
        [id, messageId, now.toISOString(), path, planned.length, String(control)],
      );
      await tx.query(
        `UPDATE bank_debits SET state = 'exported', problem = NULL, export_id = $2, end_to_end_id = x.e2e,
           cents = x.cents, sequence_type = x.seq, collection_date = x.cdate
         FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[]) AS x(id, cents, seq, cdate, e2e)
         WHERE contract = $1 AND debit_id = x.id`,
        [
          this.#contract,
          id,
          planned.map((p) => p.debit_id),
          planned.map((p) => p.cents),
          planned.map((p) => p.sequence_type),
          planned.map((p) => p.collection_date),
          planned.map((p) => p.end_to_end_id),
        ],
      );
      const presented = new Map<string, { first: IsoDate; last: IsoDate }>();
      for (const p of planned) {
        const dates = presented.get(p.mandate_ref);
        if (!dates)
          presented.set(p.mandate_ref, { first: p.collection_date, last: p.collection_date });
        else if (p.collection_date > dates.last) dates.last = p.collection_date;
        else if (p.collection_date < dates.first) dates.first = p.collection_date;
      }
      await tx.query(
        `UPDATE bank_mandates m SET first_presented = COALESCE(m.first_presented, x.first), last_presented = x.last
         FROM unnest($1::text[], $2::text[], $3::text[]) AS x(ref, first, last) WHERE m.mandate_ref = x.ref`,
        [
          [...presented.keys()],
          [...presented.values()].map((d) => d.first),
          [...presented.values()].map((d) => d.last),
        ],
      );
      return id;
    });
    const report = await this.#writeExport(exportId, planned);
    return { ...report, skipped, ...(recovered.length ? { recovered } : {}) };
  }

  /** Writes the files of exports that were planned but not written (a crash between the two). */
  async #writePending(): Promise<string[]> {
    const { rows } = await this.#db.query<{ id: number }>(
      "SELECT id FROM bank_exports WHERE written_at IS NULL ORDER BY id",
    );
    const files: string[] = [];
    for (const row of rows) {
      this.#options.logger?.warn(
        { exportId: row.id },
        "writing an export that was planned but not written",
      );
      files.push((await this.#writeExport(row.id)).file!);
    }
    return files;
  }

  /** Writes an export: from the rows just planned, or read back from the database after an interruption (the same file). */
  async #writeExport(
    exportId: number,
    planned?: ExportRow[],
  ): Promise<Omit<ExportReport, "skipped">> {
    const { rows: exports } = await this.#db.query<{
      message_id: string;
      created_at: string | Date;
      path: string;
    }>("SELECT message_id, created_at, path FROM bank_exports WHERE id = $1", [exportId]);
    const exp = exports[0]!;
    // The first write renders what was just committed; a rewrite after a crash reads it back.
    const rows =
      planned ??
      (
        await this.#db.query<ExportRow>(
          `SELECT d.debit_id::text AS debit_id, d.agreement_id::text AS agreement_id, d.end_to_end_id, d.cents::text AS cents,
                  d.sequence_type, d.collection_date, m.*, m.address::text AS address
           FROM bank_debits d JOIN bank_mandates m ON m.mandate_ref = d.mandate_ref
           WHERE d.export_id = $1`,
          [exportId],
        )
      ).rows;
    rows.sort(
      (a, b) =>
        compare(a.collection_date, b.collection_date) ||
        compare(a.sequence_type, b.sequence_type) ||
        compare(BigInt(a.debit_id), BigInt(b.debit_id)),
    );
    const groups = new Map<string, PaymentInformation>();
    for (const row of rows) {
      const key = `${row.collection_date}/${row.sequence_type}`;
      let group = groups.get(key);
      if (!group) {
        group = {
          paymentInfoId: `${exp.message_id}-${groups.size + 1}`,
          sequenceType: row.sequence_type,
          collectionDate: row.collection_date,
          transactions: [],
        };
        groups.set(key, group);
      }
      const mandate = rowToMandate(row);
      const transaction: DirectDebitTransaction = {
        endToEndId: row.end_to_end_id,
        cents: BigInt(row.cents),
        mandateId: mandate.mandateId,
        signedOn: mandate.signedOn,
        debtor: {
          name: mandate.debtorName,
          iban: mandate.iban,
          ...(mandate.bic ? { bic: mandate.bic } : {}),
          address: mandate.address,
        },
        remittance: `Usage agreement ${row.agreement_id} debit ${row.debit_id}`,
      };
      group.transactions.push(transaction);
    }
    const createdAt = exp.created_at instanceof Date ? exp.created_at : new Date(exp.created_at);
    const doc: Pain008Document = {
      messageId: exp.message_id,
      createdAt,
      creditor: this.#options.creditor,
      batches: [...groups.values()],
    };
    const xml = renderPain008(doc, { today: berlinDate(createdAt) });
    let schema: string | undefined;
    if (this.#options.validateSchema ?? true) {
      const result = await validateXsd(xml);
      if (!result.valid) {
        throw new ValidationError(
          `pain.008 ${exp.message_id} does not validate against the ISO schema`,
          {
            details: result.errors.slice(0, 10).join("; "),
          },
        );
      }
      schema = `valid against pain.008.001.08 (${result.engine})`;
    }
    mkdirSync(resolve(this.#options.outDir), { recursive: true });
    const temporary = `${exp.path}.partial`;
    writeFileSync(temporary, xml);
    renameSync(temporary, exp.path);
    const sha256 = createHash("sha256").update(xml).digest("hex");
    await this.#db.query("UPDATE bank_exports SET written_at = now(), sha256 = $2 WHERE id = $1", [
      exportId,
      sha256,
    ]);
    let control = 0n;
    for (const row of rows) control += BigInt(row.cents);
    this.#options.logger?.info({ file: exp.path, debits: rows.length }, "pain.008 written");
    return {
      file: exp.path,
      messageId: exp.message_id,
      debits: rows.length,
      controlSum: formatCents(control),
      batches: doc.batches.map((batch) => {
        let sum = 0n;
        for (const tx of batch.transactions) sum += tx.cents;
        return {
          collectionDate: batch.collectionDate,
          sequenceType: batch.sequenceType,
          debits: batch.transactions.length,
          controlSum: formatCents(sum),
        };
      }),
      ...(schema ? { schema } : {}),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // camt.054 import

  /**
   * Reconciles a camt.054 notification: booked collections confirm their debits on-chain, returns
   * and refunds report them with their reason code. The whole file is checked before anything
   * happens; a problem anywhere means nothing changes. The same file twice is refused, unless the
   * first import was interrupted, in which case it resumes.
   */
  async importStatement(xml: string, name = "statement"): Promise<ImportReport> {
    const chain = this.#requireChain();
    const sha256 = createHash("sha256").update(xml).digest("hex");
    const statement = parseCamt054(xml, name);
    const { rows: previous } = await this.#db.query<{
      sha256: string;
      completed_at: string | null;
      name: string;
      started_at: string;
    }>(
      "SELECT sha256, completed_at, name, started_at FROM bank_imports WHERE sha256 = $1 OR message_id = $2",
      [sha256, statement.messageId],
    );
    const earlier = previous[0];
    if (earlier && (earlier.completed_at || earlier.sha256 !== sha256)) {
      throw new ConflictError(
        `${name} was already imported: message ${statement.messageId} came in ${earlier.name} at ${new Date(earlier.completed_at ?? earlier.started_at).toISOString()}; nothing changed`,
      );
    }

    const report: ImportReport = {
      messageId: statement.messageId,
      version: statement.version,
      collected: [],
      returned: [],
      alreadyApplied: [],
      ignored: [],
      warnings: [],
      resumed: Boolean(earlier),
    };
    if (!earlier) {
      await this.#planImport(
        statement.transactions,
        { sha256, name, messageId: statement.messageId, version: statement.version },
        report,
      );
    }
    await this.#applyImport(chain, sha256, report);
    await this.#db.query(
      "UPDATE bank_imports SET completed_at = now(), report = $2 WHERE sha256 = $1",
      [sha256, JSON.stringify(report)],
    );
    return report;
  }

  async #planImport(
    transactions: StatementTransaction[],
    file: { sha256: string; name: string; messageId: string; version: string },
    report: ImportReport,
  ): Promise<void> {
    const problems: string[] = [];
    const actions: {
      debitId: string;
      action: "confirm" | "return";
      reasonCode?: string;
      bookingDate?: IsoDate;
    }[] = [];
    const seen = new Set<string>();
    // State of each debit as this statement moves it, starting from what the store knows.
    const states = new Map<string, { state: string; collectedOn: string | null }>();

    const ordered = [...transactions].sort(
      (a, b) =>
        (a.bookingDate ?? "").localeCompare(b.bookingDate ?? "") ||
        (a.direction === b.direction ? 0 : a.direction === "CRDT" ? -1 : 1),
    );
    const ids = [
      ...new Set(ordered.map((t) => t.endToEndId).filter((id): id is string => Boolean(id))),
    ];
    const { rows } = await this.#db.query<DebitRow & { mandate_id: string | null }>(
      `SELECT d.debit_id::text AS debit_id, d.state, d.chain_status, d.end_to_end_id, d.cents::text AS cents, d.collected_on, m.mandate_id
       FROM bank_debits d LEFT JOIN bank_mandates m ON m.mandate_ref = d.mandate_ref
       WHERE d.contract = $1 AND d.end_to_end_id = ANY($2::text[])`,
      [this.#contract, ids],
    );
    const byE2e = new Map(rows.map((row) => [row.end_to_end_id!, row]));

    for (const tx of ordered) {
      const where = `${tx.position}${tx.endToEndId ? ` (${tx.endToEndId})` : ""}`;
      const isDirectDebit =
        tx.bankTransactionCode?.includes("DD") ||
        tx.mandateId !== undefined ||
        tx.endToEndId?.startsWith("PPU-");
      if (!isDirectDebit) {
        report.ignored.push(
          `${where}: not a direct debit (${tx.bankTransactionCode ?? "no bank transaction code"})`,
        );
        continue;
      }
      if (tx.status !== "BOOK") {
        report.ignored.push(`${where}: not booked (status ${tx.status || "missing"})`);
        continue;
      }
      const debit = tx.endToEndId ? byE2e.get(tx.endToEndId) : undefined;
      if (!debit) {
        problems.push(
          `${where}: matches no direct-debit request${tx.endToEndId ? "" : " (no end-to-end id)"}`,
        );
        continue;
      }
      if (tx.mandateId !== undefined && tx.mandateId !== debit.mandate_id) {
        problems.push(
          `${where}: mandate ${tx.mandateId} does not match the request's mandate ${debit.mandate_id}`,
        );
        continue;
      }
      if (tx.currency !== "EUR") {
        problems.push(
          `${where}: currency ${tx.currency || "missing"}; only EUR direct debits exist`,
        );
        continue;
      }
      const key = `${tx.direction}:${tx.endToEndId}`;
      if (seen.has(key)) {
        problems.push(
          `${where}: the same ${tx.direction === "CRDT" ? "collection" : "return"} appears twice in the file`,
        );
        continue;
      }
      seen.add(key);
      const expected = BigInt(debit.cents ?? "0");
      const state = states.get(debit.debit_id) ?? {
        state: debit.state,
        collectedOn: debit.collected_on,
      };
      states.set(debit.debit_id, state);
      if (tx.direction === "CRDT") {
        if (tx.cents !== expected) {
          problems.push(
            `${where}: collected ${formatCents(tx.cents)} EUR but the request was for ${formatCents(expected)} EUR`,
          );
          continue;
        }
        if (state.state === "collected" || state.state === "returned") {
          report.alreadyApplied.push(`${where}: debit ${debit.debit_id} is already ${state.state}`);
          continue;
        }
        state.state = "collected";
        state.collectedOn = tx.bookingDate ?? null;
        actions.push({ debitId: debit.debit_id, action: "confirm", bookingDate: tx.bookingDate });
      } else {
        if (!tx.reasonCode || !/^[A-Z0-9]{4}$/.test(tx.reasonCode)) {
          problems.push(
            `${where}: a return without an ISO 20022 reason code (got "${tx.reasonCode ?? ""}")`,
          );
          continue;
        }
        if (tx.cents < expected) {
          problems.push(
            `${where}: returned ${formatCents(tx.cents)} EUR but the debit was ${formatCents(expected)} EUR`,
          );
          continue;
        }
        if (state.state === "returned") {
          report.alreadyApplied.push(`${where}: debit ${debit.debit_id} is already returned`);
          continue;
        }
        if (state.state === "collected" && state.collectedOn && tx.bookingDate) {
          const days = daysBetween(state.collectedOn, tx.bookingDate);
          const unauthorised = UNAUTHORISED_REASONS.has(tx.reasonCode);
          const limit = unauthorised ? REFUND_DAYS_UNAUTHORISED : REFUND_DAYS_AUTHORISED;
          if (days > limit) {
            report.warnings.push(
              `${where}: refund ${days} days after the collection, beyond the ${unauthorised ? "13 months for an unauthorised debit" : "8 weeks for an authorised debit"}; reported on-chain as the bank booked it`,
            );
          }
        }
        state.state = "returned";
        actions.push({
          debitId: debit.debit_id,
          action: "return",
          reasonCode: tx.reasonCode,
          bookingDate: tx.bookingDate,
        });
      }
    }
    if (problems.length > 0) {
      throw new ValidationError(
        `${file.name} cannot be imported: ${problems.length} problem(s); nothing changed`,
        {
          details: problems.slice(0, 20).join("; ") + (problems.length > 20 ? "; …" : ""),
        },
      );
    }
    await this.#db.transaction(async (tx: Queryable) => {
      await tx.query(
        "INSERT INTO bank_imports (sha256, message_id, version, name) VALUES ($1, $2, $3, $4)",
        [file.sha256, file.messageId, file.version, file.name],
      );
      for (const [seq, action] of actions.entries()) {
        await tx.query(
          "INSERT INTO bank_import_actions (import_sha256, seq, debit_id, action, reason_code, booking_date) VALUES ($1, $2, $3, $4, $5, $6)",
          [
            file.sha256,
            seq,
            action.debitId,
            action.action,
            action.reasonCode ?? null,
            action.bookingDate ?? null,
          ],
        );
      }
    });
  }

  async #applyImport(chain: BankChain, sha256: string, report: ImportReport): Promise<void> {
    const { rows } = await this.#db.query<{
      seq: number;
      debit_id: string;
      action: "confirm" | "return";
      reason_code: string | null;
      booking_date: string | null;
      outcome: string | null;
      tx_hash: string | null;
      token: string;
      amount: string;
      end_to_end_id: string;
      cents: string;
    }>(
      `SELECT a.seq, a.debit_id::text AS debit_id, a.action, a.reason_code, a.booking_date, a.outcome, a.tx_hash,
              d.token, d.amount::text AS amount, d.end_to_end_id, d.cents::text AS cents
       FROM bank_import_actions a JOIN bank_debits d ON d.contract = $2 AND d.debit_id = a.debit_id
       WHERE a.import_sha256 = $1 ORDER BY a.seq`,
      [sha256, this.#contract],
    );
    for (const row of rows) {
      const debitId = BigInt(row.debit_id);
      const amount = formatCents(BigInt(row.cents));
      const base = { debitId: row.debit_id, endToEndId: row.end_to_end_id, amount };
      // The chain is the truth: an action sent before an interruption is not sent again.
      const status = await chain.debitStatus(debitId);
      let txHash = (row.tx_hash ?? undefined) as Hex | undefined;
      if (row.action === "confirm") {
        if (status === "requested") {
          txHash = await chain.confirm(debitId, row.token as Address, BigInt(row.amount));
        } else if (status === "returned" && !row.outcome) {
          report.warnings.push(
            `debit ${row.debit_id}: the chain already shows it returned; collection not confirmed`,
          );
          await this.#markAction(sha256, row.seq, "skipped", txHash);
          continue;
        }
        await this.#db.query(
          "UPDATE bank_debits SET state = 'collected', chain_status = 'collected', collected_on = $3 WHERE contract = $1 AND debit_id = $2",
          [this.#contract, row.debit_id, row.booking_date],
        );
        report.collected.push({ ...base, ...(txHash ? { tx: txHash } : {}) });
      } else {
        const afterCollection =
          status === "collected" || (status === "returned" && row.outcome === "after-collection");
        if (status === "requested" || status === "collected") {
          txHash = await chain.reportReturn(debitId, row.reason_code!);
        }
        await this.#db.query(
          "UPDATE bank_debits SET state = 'returned', chain_status = 'returned', returned_on = $3, return_reason = $4 WHERE contract = $1 AND debit_id = $2",
          [this.#contract, row.debit_id, row.booking_date, row.reason_code],
        );
        report.returned.push({
          ...base,
          reasonCode: row.reason_code!,
          afterCollection,
          ...(txHash ? { tx: txHash } : {}),
        });
        await this.#markAction(
          sha256,
          row.seq,
          afterCollection ? "after-collection" : "done",
          txHash,
        );
        continue;
      }
      await this.#markAction(sha256, row.seq, "done", txHash);
    }
  }

  async #markAction(sha256: string, seq: number, outcome: string, txHash?: string): Promise<void> {
    await this.#db.query(
      "UPDATE bank_import_actions SET outcome = $3, tx_hash = $4 WHERE import_sha256 = $1 AND seq = $2",
      [sha256, seq, outcome, txHash ?? null],
    );
  }

  #requireChain(): BankChain {
    if (!this.#chain)
      throw new ValidationError("this operation needs the chain: set RPC_URL and CONTRACT_ADDRESS");
    return this.#chain;
  }
}
