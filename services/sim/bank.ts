/**
 * The creditor's bank, simulated: reads a pain.008 the bridge wrote and answers with a camt.054
 * debit/credit notification in either namespace, booking each debit as collected or returned.
 * `npm start` and the tests use it to run the whole cycle without a real bank.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { XMLParser } from "fast-xml-parser";
import type { BankBridge, Creditor } from "../bank/bridge.ts";
import type { IsoDate } from "../bank/calendar.ts";
import { formatCents, parseCents } from "../bank/sepa.ts";

/** The machine owner's bank details in the embedded demo, the benchmark and the tests. */
export const DEMO_CREDITOR: Creditor = {
  name: "Maschinenpark Nord GmbH",
  iban: "DE02120300000000202051",
  bic: "BYLADEM1001",
  creditorId: "DE98ZZZ09999999999",
  address: {
    street: "Hafenstrasse",
    buildingNumber: "12",
    postCode: "20457",
    town: "Hamburg",
    country: "DE",
  },
};

export interface InitiatedDebit {
  endToEndId: string;
  mandateId: string;
  cents: bigint;
  collectionDate: IsoDate;
}

const painParser = new XMLParser({
  removeNSPrefix: true,
  parseTagValue: false,
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  isArray: (name) => name === "PmtInf" || name === "DrctDbtTxInf",
});

/** The debits of a pain.008 file, as its bank sees them. */
export function readPain008(xml: string): InitiatedDebit[] {
  const doc = painParser.parse(xml) as {
    Document: { CstmrDrctDbtInitn: { PmtInf: Record<string, unknown>[] } };
  };
  return doc.Document.CstmrDrctDbtInitn.PmtInf.flatMap((block) =>
    (block.DrctDbtTxInf as Record<string, Record<string, unknown>>[]).map((tx) => ({
      endToEndId: String((tx.PmtId as Record<string, unknown>).EndToEndId),
      mandateId: String(
        ((tx.DrctDbtTx as Record<string, unknown>).MndtRltdInf as Record<string, unknown>).MndtId,
      ),
      cents: parseCents(String((tx.InstdAmt as Record<string, unknown>)["#text"])),
      collectionDate: String(block.ReqdColltnDt),
    })),
  );
}

export interface BookedEntry {
  endToEndId: string;
  mandateId?: string;
  cents: bigint;
  /** CRDT: the collection reached the creditor; DBIT: a return or refund took it back. */
  direction: "CRDT" | "DBIT";
  bookingDate: IsoDate;
  /** Return reason of a DBIT, e.g. AM04 (insufficient funds) or MD06 (refund requested). */
  reasonCode?: string;
  status?: "BOOK" | "PDNG";
}

export interface Camt054Options {
  version: "camt.054.001.08" | "camt.054.001.02";
  messageId: string;
  createdAt: Date;
  accountIban: string;
  entries: BookedEntry[];
}

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Writes a camt.054 notification with one entry per booking, as a creditor's bank reports them. */
export function writeCamt054(options: Camt054Options): string {
  const v08 = options.version === "camt.054.001.08";
  const created = `${options.createdAt.toISOString().slice(0, 19)}+00:00`;
  const entries = options.entries.map((entry, index) => {
    const status = entry.status ?? "BOOK";
    const amount = formatCents(entry.cents);
    const refs =
      `<Refs><EndToEndId>${esc(entry.endToEndId)}</EndToEndId>` +
      (entry.mandateId ? `<MndtId>${esc(entry.mandateId)}</MndtId>` : "") +
      `</Refs>`;
    const txAmount = v08
      ? `<Amt Ccy="EUR">${amount}</Amt><CdtDbtInd>${entry.direction}</CdtDbtInd>`
      : `<AmtDtls><TxAmt><Amt Ccy="EUR">${amount}</Amt></TxAmt></AmtDtls>`;
    const returnInfo = entry.reasonCode
      ? `<RtrInf><Rsn><Cd>${esc(entry.reasonCode)}</Cd></Rsn></RtrInf>`
      : "";
    const subFamily =
      entry.direction === "CRDT" ? "ESDD" : entry.reasonCode === "MD06" ? "PRDD" : "UPDD";
    return `      <Ntry>
        <NtryRef>${index + 1}</NtryRef>
        <Amt Ccy="EUR">${amount}</Amt>
        <CdtDbtInd>${entry.direction}</CdtDbtInd>
        <Sts>${v08 ? `<Cd>${status}</Cd>` : status}</Sts>
        <BookgDt><Dt>${entry.bookingDate}</Dt></BookgDt>
        <ValDt><Dt>${entry.bookingDate}</Dt></ValDt>
        <AcctSvcrRef>${esc(options.messageId)}-${index + 1}</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>IDDT</Cd><SubFmlyCd>${subFamily}</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls>${refs}${txAmount}${returnInfo}</TxDtls></NtryDtls>
      </Ntry>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:${options.version}">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>${esc(options.messageId)}</MsgId><CreDtTm>${created}</CreDtTm></GrpHdr>
    <Ntfctn>
      <Id>${esc(options.messageId)}-N</Id>
      <CreDtTm>${created}</CreDtTm>
      <Acct><Id><IBAN>${options.accountIban}</IBAN></Id></Acct>
${entries.join("\n")}
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>
`;
}

export interface BankSimulationOptions {
  bridge: BankBridge;
  /** The creditor's account the notifications are for. */
  accountIban: string;
  /** Where the notifications the simulated bank sends are written. */
  outDir: string;
  everyMs: number;
  /** Every n-th debit is returned for insufficient funds (AM04); the others are collected. 0: none. */
  returnEvery?: number;
  onProgress?: (message: string) => void;
}

/**
 * A round trip every `everyMs`: the bridge follows the chain and writes a pain.008 for the open
 * debits; the simulated bank books them (most collected, some returned) and answers with a camt.054
 * that the bridge imports.
 */
export function startBankSimulation(options: BankSimulationOptions): { stop(): Promise<void> } {
  const progress = options.onProgress ?? (() => {});
  let round = 0;
  let running: Promise<void> | undefined;
  let stopped = false;
  let debitsSeen = 0;

  async function once(): Promise<void> {
    await options.bridge.sync();
    const exported = await options.bridge.exportBatch();
    if (!exported.file) return;
    progress(
      `bank bridge: ${exported.debits} direct debit(s), ${exported.controlSum} EUR, in ${basename(exported.file)}`,
    );
    const debits = readPain008(readFileSync(exported.file, "utf8"));
    round += 1;
    const entries: BookedEntry[] = debits.map((debit) => {
      debitsSeen += 1;
      const returned = (options.returnEvery ?? 0) > 0 && debitsSeen % options.returnEvery! === 0;
      return {
        ...debit,
        direction: returned ? "DBIT" : "CRDT",
        bookingDate: debit.collectionDate,
        ...(returned ? { reasonCode: "AM04" } : {}),
      };
    });
    const messageId = `SIMBANK-${Date.now()}-${round}`;
    const xml = writeCamt054({
      version: "camt.054.001.08",
      messageId,
      createdAt: new Date(),
      accountIban: options.accountIban,
      entries,
    });
    mkdirSync(options.outDir, { recursive: true });
    const file = join(options.outDir, `camt.054-${messageId}.xml`);
    writeFileSync(file, xml);
    const report = await options.bridge.importStatement(xml, basename(file));
    progress(
      `bank bridge: ${report.collected.length} collected, ${report.returned.length} returned (${basename(file)})`,
    );
  }

  const timer = setInterval(() => {
    if (running || stopped) return;
    running = once()
      .catch((error: unknown) =>
        progress(
          `bank bridge: round failed: ${error instanceof Error ? error.message : String(error)}`,
        ),
      )
      .finally(() => {
        running = undefined;
      });
  }, options.everyMs);

  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
