/**
 * SEPA Core Direct Debit initiation, ISO 20022 pain.008.001.08, as the EPC implementation
 * guidelines (2025 rulebook, in force from November 2026) ask for it: payment-information blocks
 * per collection date and sequence type, EUR only, two decimals, control sums, SEPA characters,
 * structured or hybrid addresses. `checkPain008` holds the rules the XML schema cannot express;
 * `renderPain008` refuses a document that breaks one.
 */
import { ValidationError } from "../shared/errors.ts";
import { isTargetBusinessDay, type IsoDate } from "./calendar.ts";
import type { PostalAddress } from "./mandates.ts";
import {
  formatCents,
  isEeaCountry,
  isSepaText,
  MAX_CENTS,
  MIN_CENTS,
  normaliseBic,
  normaliseCreditorId,
  normaliseIban,
  sepaIdProblem,
} from "./sepa.ts";

export const PAIN008_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.008.001.08";

export type SequenceType = "FRST" | "RCUR" | "OOFF" | "FNAL";

export interface Party {
  name: string;
  iban: string;
  bic?: string;
  address: PostalAddress;
}

export interface DirectDebitTransaction {
  endToEndId: string;
  /** Integer euro cents. */
  cents: bigint;
  mandateId: string;
  signedOn: IsoDate;
  debtor: Party;
  remittance: string;
}

export interface PaymentInformation {
  paymentInfoId: string;
  sequenceType: SequenceType;
  collectionDate: IsoDate;
  transactions: DirectDebitTransaction[];
}

export interface Pain008Document {
  messageId: string;
  createdAt: Date;
  creditor: Party & { creditorId: string };
  batches: PaymentInformation[];
}

const SEQUENCE_TYPES = new Set(["FRST", "RCUR", "OOFF", "FNAL"]);

function checkAddress(address: PostalAddress, who: string, problems: string[]): void {
  if (!address.town)
    problems.push(`${who}: address without town (structured or hybrid addresses need one)`);
  if (!/^[A-Z]{2}$/.test(address.country))
    problems.push(`${who}: address without ISO country code`);
  if ((address.lines?.length ?? 0) > 2)
    problems.push(`${who}: hybrid address with more than 2 lines`);
  const parts = [
    address.street,
    address.buildingNumber,
    address.postCode,
    address.town,
    ...(address.lines ?? []),
  ];
  for (const part of parts) {
    if (part !== undefined && !isSepaText(part))
      problems.push(`${who}: "${part}" has characters outside the SEPA set`);
  }
}

function checkParty(party: Party, who: string, problems: string[]): void {
  if (!party.name) problems.push(`${who}: no name`);
  else if (party.name.length > 70) problems.push(`${who}: name longer than 70 characters`);
  else if (!isSepaText(party.name))
    problems.push(`${who}: name "${party.name}" has characters outside the SEPA set`);
  try {
    if (normaliseIban(party.iban) !== party.iban)
      problems.push(`${who}: IBAN not in electronic format`);
  } catch (error) {
    problems.push(`${who}: ${(error as Error).message}`);
  }
  if (party.bic !== undefined) {
    try {
      normaliseBic(party.bic);
    } catch (error) {
      problems.push(`${who}: ${(error as Error).message}`);
    }
  } else if (!isEeaCountry(party.iban.slice(0, 2))) {
    problems.push(`${who}: a BIC is required outside the EEA`);
  }
  checkAddress(party.address, who, problems);
}

/** Every rule of the scheme and of this bridge that the XML schema cannot check; empty when all hold. */
export function checkPain008(doc: Pain008Document, options: { today?: IsoDate } = {}): string[] {
  const problems: string[] = [];
  const ids = new Set<string>();
  const unique = (id: string, what: string) => {
    const problem = sepaIdProblem(id, what);
    if (problem) problems.push(problem);
    if (ids.has(`${what}:${id}`)) problems.push(`${what} "${id}" is used twice`);
    ids.add(`${what}:${id}`);
  };
  unique(doc.messageId, "message id");
  checkParty(doc.creditor, "creditor", problems);
  try {
    normaliseCreditorId(doc.creditor.creditorId);
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (doc.batches.length === 0) problems.push("the file has no payment information");
  const groups = new Set<string>();
  for (const batch of doc.batches) {
    const where = `payment information ${batch.paymentInfoId}`;
    unique(batch.paymentInfoId, "payment-information id");
    if (!SEQUENCE_TYPES.has(batch.sequenceType))
      problems.push(`${where}: unknown sequence type ${batch.sequenceType}`);
    const group = `${batch.collectionDate}/${batch.sequenceType}`;
    if (groups.has(group))
      problems.push(
        `${where}: a second block for ${group}; one per collection date and sequence type`,
      );
    groups.add(group);
    if (!isTargetBusinessDay(batch.collectionDate)) {
      problems.push(
        `${where}: collection date ${batch.collectionDate} is not a TARGET2 business day`,
      );
    }
    if (options.today && batch.collectionDate <= options.today) {
      problems.push(
        `${where}: collection date ${batch.collectionDate} is not after today (${options.today})`,
      );
    }
    if (batch.transactions.length === 0) problems.push(`${where}: no transactions`);
    for (const tx of batch.transactions) {
      const who = `transaction ${tx.endToEndId}`;
      unique(tx.endToEndId, "end-to-end id");
      const mandateProblem = sepaIdProblem(tx.mandateId, "mandate id");
      if (mandateProblem) problems.push(`${who}: ${mandateProblem}`);
      if (tx.cents < MIN_CENTS || tx.cents > MAX_CENTS) {
        problems.push(
          `${who}: amount ${formatCents(tx.cents < 0n ? 0n : tx.cents)} EUR is outside the scheme's 0.01 to 999999999.99`,
        );
      }
      if (!/^\d{4}-\d{2}-\d{2}$/.test(tx.signedOn) || tx.signedOn > batch.collectionDate) {
        problems.push(
          `${who}: date of signature ${tx.signedOn} must be a date before the collection`,
        );
      }
      if (tx.remittance.length > 140 || !isSepaText(tx.remittance)) {
        problems.push(`${who}: remittance information must be at most 140 SEPA characters`);
      }
      checkParty(tx.debtor, `${who} debtor`, problems);
    }
  }
  return problems;
}

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
};

function xml(text: string): string {
  return text.replace(/[&<>"]/g, (char) => ESCAPES[char]!);
}

function address(addr: PostalAddress, indent: string): string {
  const parts: string[] = [];
  if (addr.street) parts.push(`<StrtNm>${xml(addr.street)}</StrtNm>`);
  if (addr.buildingNumber) parts.push(`<BldgNb>${xml(addr.buildingNumber)}</BldgNb>`);
  if (addr.postCode) parts.push(`<PstCd>${xml(addr.postCode)}</PstCd>`);
  parts.push(`<TwnNm>${xml(addr.town)}</TwnNm>`, `<Ctry>${addr.country}</Ctry>`);
  for (const line of addr.lines ?? []) parts.push(`<AdrLine>${xml(line)}</AdrLine>`);
  return `${indent}<PstlAdr>\n${parts.map((part) => `${indent}  ${part}\n`).join("")}${indent}</PstlAdr>\n`;
}

function agent(bic: string | undefined, indent: string): string {
  const id = bic ? `<BICFI>${bic}</BICFI>` : "<Othr><Id>NOTPROVIDED</Id></Othr>";
  return `${indent}<FinInstnId>${id}</FinInstnId>\n`;
}

function sumCents(transactions: readonly DirectDebitTransaction[]): bigint {
  let sum = 0n;
  for (const tx of transactions) sum += tx.cents;
  return sum;
}

/** ISO date-time without fractions, in UTC with its offset, as banks' parsers expect. */
function isoDateTime(date: Date): string {
  return `${date.toISOString().slice(0, 19)}+00:00`;
}

function transaction(tx: DirectDebitTransaction): string {
  const i = "        ";
  return (
    `      <DrctDbtTxInf>\n` +
    `${i}<PmtId><EndToEndId>${xml(tx.endToEndId)}</EndToEndId></PmtId>\n` +
    `${i}<InstdAmt Ccy="EUR">${formatCents(tx.cents)}</InstdAmt>\n` +
    `${i}<DrctDbtTx><MndtRltdInf><MndtId>${xml(tx.mandateId)}</MndtId><DtOfSgntr>${tx.signedOn}</DtOfSgntr></MndtRltdInf></DrctDbtTx>\n` +
    `${i}<DbtrAgt>\n${agent(tx.debtor.bic, `${i}  `)}${i}</DbtrAgt>\n` +
    `${i}<Dbtr>\n${i}  <Nm>${xml(tx.debtor.name)}</Nm>\n${address(tx.debtor.address, `${i}  `)}${i}</Dbtr>\n` +
    `${i}<DbtrAcct><Id><IBAN>${tx.debtor.iban}</IBAN></Id></DbtrAcct>\n` +
    `${i}<RmtInf><Ustrd>${xml(tx.remittance)}</Ustrd></RmtInf>\n` +
    `      </DrctDbtTxInf>\n`
  );
}

/** Writes the document as pain.008.001.08 XML, after checking every rule; throws with all problems found. */
export function renderPain008(doc: Pain008Document, options: { today?: IsoDate } = {}): string {
  const problems = checkPain008(doc, options);
  if (problems.length > 0) {
    throw new ValidationError(`pain.008 ${doc.messageId} breaks ${problems.length} SEPA rule(s)`, {
      details: problems.slice(0, 20).join("; ") + (problems.length > 20 ? "; …" : ""),
    });
  }
  const all = doc.batches.flatMap((batch) => batch.transactions);
  const c = doc.creditor;
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>\n`,
    `<Document xmlns="${PAIN008_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n`,
    `  <CstmrDrctDbtInitn>\n`,
    `    <GrpHdr>\n`,
    `      <MsgId>${xml(doc.messageId)}</MsgId>\n`,
    `      <CreDtTm>${isoDateTime(doc.createdAt)}</CreDtTm>\n`,
    `      <NbOfTxs>${all.length}</NbOfTxs>\n`,
    `      <CtrlSum>${formatCents(sumCents(all))}</CtrlSum>\n`,
    `      <InitgPty><Nm>${xml(c.name)}</Nm></InitgPty>\n`,
    `    </GrpHdr>\n`,
  ];
  for (const batch of doc.batches) {
    out.push(
      `    <PmtInf>\n`,
      `      <PmtInfId>${xml(batch.paymentInfoId)}</PmtInfId>\n`,
      `      <PmtMtd>DD</PmtMtd>\n`,
      `      <BtchBookg>true</BtchBookg>\n`,
      `      <NbOfTxs>${batch.transactions.length}</NbOfTxs>\n`,
      `      <CtrlSum>${formatCents(sumCents(batch.transactions))}</CtrlSum>\n`,
      `      <PmtTpInf><SvcLvl><Cd>SEPA</Cd></SvcLvl><LclInstrm><Cd>CORE</Cd></LclInstrm><SeqTp>${batch.sequenceType}</SeqTp></PmtTpInf>\n`,
      `      <ReqdColltnDt>${batch.collectionDate}</ReqdColltnDt>\n`,
      `      <Cdtr>\n        <Nm>${xml(c.name)}</Nm>\n${address(c.address, "        ")}      </Cdtr>\n`,
      `      <CdtrAcct><Id><IBAN>${c.iban}</IBAN></Id></CdtrAcct>\n`,
      `      <CdtrAgt>\n${agent(c.bic, "        ")}      </CdtrAgt>\n`,
      `      <ChrgBr>SLEV</ChrgBr>\n`,
      `      <CdtrSchmeId><Id><PrvtId><Othr><Id>${c.creditorId}</Id><SchmeNm><Prtry>SEPA</Prtry></SchmeNm></Othr></PrvtId></Id></CdtrSchmeId>\n`,
    );
    for (const tx of batch.transactions) out.push(transaction(tx));
    out.push(`    </PmtInf>\n`);
  }
  out.push(`  </CstmrDrctDbtInitn>\n</Document>\n`);
  return out.join("");
}
