/**
 * Reads ISO 20022 camt.054 (bank-to-customer debit/credit notification), in the .001.08 namespace
 * and the older .001.02 still sent by many banks, into the transactions the bridge reconciles.
 */
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { ValidationError } from "../shared/errors.ts";
import type { IsoDate } from "./calendar.ts";
import { parseCents } from "./sepa.ts";

export const CAMT054_NAMESPACES = {
  "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08": "camt.054.001.08",
  "urn:iso:std:iso:20022:tech:xsd:camt.054.001.02": "camt.054.001.02",
} as const;

export type Camt054Version = (typeof CAMT054_NAMESPACES)[keyof typeof CAMT054_NAMESPACES];

export interface StatementTransaction {
  /** Where it is in the file, for messages: "entry 3, transaction 2". */
  position: string;
  /** The bank's reference of the entry (AcctSvcrRef), when given. */
  entryReference?: string;
  direction: "CRDT" | "DBIT";
  /** BOOK, PDNG, INFO … only booked entries move money. */
  status: string;
  bookingDate?: IsoDate;
  cents: bigint;
  currency: string;
  endToEndId?: string;
  mandateId?: string;
  /** ISO 20022 return reason (AC04, AM04, MD06, MS02 …) of a return or refund. */
  reasonCode?: string;
  /** Bank transaction code family and sub-family, e.g. "PMNT/IDDT/ESDD". */
  bankTransactionCode?: string;
}

export interface Camt054Statement {
  version: Camt054Version;
  messageId: string;
  createdAt?: string;
  transactions: StatementTransaction[];
}

type Node = Record<string, unknown>;

const ARRAYS = new Set(["Ntfctn", "Ntry", "NtryDtls", "TxDtls"]);

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  isArray: (name) => ARRAYS.has(name),
});

function child(node: unknown, ...path: string[]): unknown {
  let current = node;
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = (current as Node)[key];
  }
  return current;
}

function textOf(node: unknown, ...path: string[]): string | undefined {
  const value = child(node, ...path);
  if (value === undefined || value === null) return undefined;
  if (typeof value === "object") {
    const inner = (value as Node)["#text"];
    return inner === undefined ? undefined : String(inner);
  }
  return String(value);
}

function amountOf(node: unknown): { text: string; currency: string } | undefined {
  if (node === undefined || node === null) return undefined;
  if (typeof node === "object") {
    const text = (node as Node)["#text"];
    const currency = (node as Node)["@Ccy"];
    if (text === undefined) return undefined;
    return { text: String(text), currency: String(currency ?? "") };
  }
  return { text: String(node), currency: "" };
}

function list(node: unknown): unknown[] {
  if (node === undefined || node === null) return [];
  return Array.isArray(node) ? node : [node];
}

function dateOf(node: unknown): IsoDate | undefined {
  const date = textOf(node, "Dt") ?? textOf(node, "DtTm");
  return date?.slice(0, 10);
}

/**
 * Parses a camt.054 document. Throws a ValidationError when the file is not well-formed XML, not
 * camt.054 in a supported version, or lacks the parts reconciliation needs.
 */
export function parseCamt054(xml: string, name = "statement"): Camt054Statement {
  const wellFormed = XMLValidator.validate(xml);
  if (wellFormed !== true) {
    throw new ValidationError(`${name} is not well-formed XML`, {
      details: `${wellFormed.err.msg} (line ${wellFormed.err.line})`,
    });
  }
  const root = /<(?:[\w.-]+:)?Document\b[^>]*?\sxmlns(?::[\w.-]+)?="([^"]+)"/.exec(xml);
  const namespace = root?.[1] ?? "(none)";
  const version = (CAMT054_NAMESPACES as Record<string, Camt054Version>)[namespace];
  if (!version) {
    const hint = /camt\.05[23]/.test(namespace)
      ? " (camt.052/053 account reports and statements are not debit/credit notifications)"
      : /pain\./.test(namespace)
        ? " (a payment initiation, not a bank statement)"
        : "";
    throw new ValidationError(
      `${name} is not a camt.054 notification: its namespace is ${namespace}${hint}; expected camt.054.001.08 or camt.054.001.02`,
    );
  }
  const doc = parser.parse(xml) as Node;
  const body = child(doc, "Document", "BkToCstmrDbtCdtNtfctn");
  if (!body) throw new ValidationError(`${name} has no BkToCstmrDbtCdtNtfctn element`);
  const messageId = textOf(body, "GrpHdr", "MsgId");
  if (!messageId)
    throw new ValidationError(`${name} has no group header message id (GrpHdr/MsgId)`);

  const transactions: StatementTransaction[] = [];
  let entryNumber = 0;
  for (const notification of list(child(body, "Ntfctn"))) {
    for (const entry of list(child(notification, "Ntry"))) {
      entryNumber += 1;
      const direction = textOf(entry, "CdtDbtInd");
      if (direction !== "CRDT" && direction !== "DBIT") {
        throw new ValidationError(`${name}: entry ${entryNumber} has no credit/debit indicator`);
      }
      // .001.02: <Sts>BOOK</Sts>; .001.08: <Sts><Cd>BOOK</Cd></Sts>.
      const status = textOf(entry, "Sts", "Cd") ?? textOf(entry, "Sts") ?? "";
      const bookingDate = dateOf(child(entry, "BookgDt"));
      const entryAmount = amountOf(child(entry, "Amt"));
      const code = child(entry, "BkTxCd", "Domn");
      const bankTransactionCode = code
        ? [textOf(code, "Cd"), textOf(code, "Fmly", "Cd"), textOf(code, "Fmly", "SubFmlyCd")]
            .filter(Boolean)
            .join("/")
        : undefined;
      const details = list(child(entry, "NtryDtls")).flatMap((d) => list(child(d, "TxDtls")));
      const items = details.length > 0 ? details : [undefined];
      items.forEach((tx, index) => {
        const position = `entry ${entryNumber}${items.length > 1 ? `, transaction ${index + 1}` : ""}`;
        const amount =
          amountOf(child(tx, "Amt")) ??
          amountOf(child(tx, "AmtDtls", "TxAmt", "Amt")) ??
          amountOf(child(tx, "AmtDtls", "InstdAmt", "Amt")) ??
          (items.length === 1 ? entryAmount : undefined);
        if (!amount) throw new ValidationError(`${name}: ${position} has no amount`);
        let cents: bigint;
        try {
          cents = parseCents(amount.text);
        } catch (error) {
          throw new ValidationError(`${name}: ${position}: ${(error as Error).message}`);
        }
        transactions.push({
          position,
          entryReference: textOf(entry, "AcctSvcrRef"),
          direction: (textOf(tx, "CdtDbtInd") as "CRDT" | "DBIT" | undefined) ?? direction,
          status,
          bookingDate,
          cents,
          currency: amount.currency || entryAmount?.currency || "",
          endToEndId: textOf(tx, "Refs", "EndToEndId"),
          mandateId: textOf(tx, "Refs", "MndtId"),
          reasonCode: textOf(tx, "RtrInf", "Rsn", "Cd") ?? textOf(tx, "RtrInf", "Rsn", "Prtry"),
          bankTransactionCode,
        });
      });
    }
  }
  return {
    version,
    messageId,
    createdAt: textOf(body, "GrpHdr", "CreDtTm"),
    transactions,
  };
}
