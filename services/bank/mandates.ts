/**
 * SEPA mandates: the personal data stays here, off-chain. The chain holds only the mandate
 * reference, keccak256(salt ‖ creditor id ‖ "/" ‖ mandate id), where the salt is 32 random bytes
 * kept with the mandate, so the reference cannot be linked to a mandate id by guessing.
 */
import { randomBytes } from "node:crypto";
import { concat, keccak256, stringToHex, type Hex } from "viem";
import { ValidationError } from "../shared/errors.ts";
import {
  isEeaCountry,
  normaliseBic,
  normaliseCreditorId,
  normaliseIban,
  sepaIdProblem,
  toSepaText,
} from "./sepa.ts";
import type { IsoDate } from "./calendar.ts";

/**
 * A postal address, structured (street, building, post code, town, country) or hybrid (town and
 * country structured, the rest in at most two free lines), as SEPA requires from November 2026.
 */
export interface PostalAddress {
  street?: string;
  buildingNumber?: string;
  postCode?: string;
  town: string;
  country: string;
  /** Hybrid form: at most two lines of at most 70 characters, not repeating town or country. */
  lines?: string[];
}

export type MandateKind = "recurrent" | "oneoff";

export interface MandateInput {
  /** The unique mandate reference agreed with the debtor (1–35 SEPA characters). */
  mandateId: string;
  /** Date of signature, YYYY-MM-DD. */
  signedOn: IsoDate;
  debtorName: string;
  iban: string;
  /** Optional inside the EEA; required for debtors in other SEPA countries. */
  bic?: string;
  address: PostalAddress;
  kind?: MandateKind;
}

export interface Mandate extends Required<Omit<MandateInput, "bic">> {
  bic?: string;
  creditorId: string;
  salt: Hex;
  mandateRef: Hex;
}

export function mandateRef(salt: Hex, creditorId: string, mandateId: string): Hex {
  return keccak256(concat([salt, stringToHex(`${creditorId}/${mandateId}`)]));
}

function text(value: unknown, what: string, max: number, problems: string[]): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") {
    problems.push(`${what} must be text`);
    return undefined;
  }
  const cleaned = toSepaText(value);
  if (cleaned.length > max) problems.push(`${what} is longer than ${max} characters`);
  return cleaned.length > 0 ? cleaned : undefined;
}

export function validateAddress(input: unknown, who: string, problems: string[]): PostalAddress {
  if (typeof input !== "object" || input === null) {
    problems.push(
      `${who} address is missing: town and country are required (structured or hybrid address)`,
    );
    return { town: "", country: "" };
  }
  const raw = input as Record<string, unknown>;
  const town = text(raw.town, `${who} town`, 35, problems);
  if (!town)
    problems.push(`${who} address has no town: structured and hybrid addresses require one`);
  const country = typeof raw.country === "string" ? raw.country.trim().toUpperCase() : "";
  if (!/^[A-Z]{2}$/.test(country)) {
    problems.push(
      `${who} address needs a two-letter ISO 3166 country code, got "${String(raw.country ?? "")}"`,
    );
  }
  const address: PostalAddress = { town: town ?? "", country };
  const street = text(raw.street, `${who} street`, 70, problems);
  const buildingNumber = text(raw.buildingNumber, `${who} building number`, 16, problems);
  const postCode = text(raw.postCode, `${who} post code`, 16, problems);
  if (street) address.street = street;
  if (buildingNumber) address.buildingNumber = buildingNumber;
  if (postCode) address.postCode = postCode;
  if (raw.lines !== undefined) {
    if (!Array.isArray(raw.lines)) {
      problems.push(`${who} address lines must be a list`);
    } else if (raw.lines.length > 2) {
      problems.push(`${who} hybrid address has ${raw.lines.length} lines; at most 2 are allowed`);
    } else {
      const lines = raw.lines
        .map((line, index) => text(line, `${who} address line ${index + 1}`, 70, problems))
        .filter((line): line is string => line !== undefined);
      if (lines.length > 0) address.lines = lines;
    }
  }
  return address;
}

function isRealDate(date: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return false;
  const parsed = new Date(`${date}T00:00:00Z`);
  return !Number.isNaN(parsed.getTime()) && parsed.toISOString().startsWith(date);
}

/**
 * Validates a mandate and fills in its on-chain reference. Every problem is reported at once;
 * nothing is stored when there is one.
 */
export function prepareMandate(
  input: unknown,
  creditorIdInput: string,
  options: { today: IsoDate; salt?: Hex },
): Mandate {
  const problems: string[] = [];
  const raw = (typeof input === "object" && input !== null ? input : {}) as Record<string, unknown>;

  const mandateId = typeof raw.mandateId === "string" ? raw.mandateId.trim() : "";
  const idProblem = sepaIdProblem(mandateId, "mandate id");
  if (idProblem) problems.push(idProblem);

  const signedOn = typeof raw.signedOn === "string" ? raw.signedOn.trim() : "";
  if (signedOn === "") {
    problems.push("the mandate has no date of signature (signedOn, YYYY-MM-DD)");
  } else if (!isRealDate(signedOn)) {
    problems.push(`date of signature "${signedOn}" is not a date (YYYY-MM-DD)`);
  } else if (signedOn > options.today) {
    problems.push(`date of signature ${signedOn} is in the future`);
  }

  const debtorName = text(raw.debtorName, "debtor name", 70, problems) ?? "";
  if (debtorName === "") problems.push("the mandate has no debtor name");

  let iban = "";
  try {
    iban = normaliseIban(typeof raw.iban === "string" ? raw.iban : "");
  } catch (error) {
    problems.push((error as Error).message);
  }
  let bic: string | undefined;
  if (typeof raw.bic === "string" && raw.bic.trim() !== "") {
    try {
      bic = normaliseBic(raw.bic);
    } catch (error) {
      problems.push((error as Error).message);
    }
  } else if (iban && !isEeaCountry(iban.slice(0, 2))) {
    problems.push(`a BIC is required for a debtor account in ${iban.slice(0, 2)}, outside the EEA`);
  }

  const address = validateAddress(raw.address, "debtor", problems);
  const kind = raw.kind ?? "recurrent";
  if (kind !== "recurrent" && kind !== "oneoff") {
    problems.push(`mandate kind must be "recurrent" or "oneoff", got "${String(kind)}"`);
  }

  let creditorId = "";
  try {
    creditorId = normaliseCreditorId(creditorIdInput);
  } catch (error) {
    problems.push((error as Error).message);
  }

  if (problems.length > 0) {
    throw new ValidationError(`mandate ${mandateId || "(no id)"} is not valid`, {
      details: problems.join("; "),
    });
  }
  const salt = options.salt ?? (`0x${randomBytes(32).toString("hex")}` as Hex);
  return {
    mandateId,
    signedOn,
    debtorName,
    iban,
    ...(bic ? { bic } : {}),
    address,
    kind: kind as MandateKind,
    creditorId,
    salt,
    mandateRef: mandateRef(salt, creditorId, mandateId),
  };
}
