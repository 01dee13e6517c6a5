/**
 * The SEPA rules the ISO schema cannot express: the Latin character set of the EPC implementation
 * guidelines (with transliteration instead of rejection), identifiers, the creditor identifier's
 * ISO 7064 MOD 97-10 check digits, IBAN and BIC (validated by ibantools), the countries that need a
 * BIC and an address, and euro amounts in integer cents.
 */
import {
  electronicFormatIBAN,
  isSEPACountry,
  isValidBIC,
  validateIBAN,
  ValidationErrorsIBAN,
} from "ibantools";
import { ValidationError } from "../shared/errors.ts";

/** Characters every SEPA bank must accept (EPC217-08 "SEPA Requirements for an Extended Character Set"). */
const SEPA_CHAR = /^[A-Za-z0-9/\-?:().,'+ ]$/;
const SEPA_TEXT = /^[A-Za-z0-9/\-?:().,'+ ]*$/;

/** Letters the Unicode decomposition does not reduce to a Latin base letter. */
const SPECIAL: Readonly<Record<string, string>> = {
  ä: "ae",
  ö: "oe",
  ü: "ue",
  Ä: "Ae",
  Ö: "Oe",
  Ü: "Ue",
  ß: "ss",
  ẞ: "SS",
  æ: "ae",
  Æ: "AE",
  ø: "o",
  Ø: "O",
  œ: "oe",
  Œ: "OE",
  đ: "d",
  Đ: "D",
  ð: "d",
  Ð: "D",
  þ: "th",
  Þ: "Th",
  ł: "l",
  Ł: "L",
  ı: "i",
  "&": "+",
  "@": "(at)",
  "€": "EUR",
  _: "-",
  "\u2018": "'",
  "\u2019": "'",
  "\u201A": "'",
  "\u201C": "'",
  "\u201D": "'",
  "\u201E": "'",
  '"': "'",
  "\u2013": "-",
  "\u2014": "-",
  "\u00A0": " ",
  "\t": " ",
  "\n": " ",
  "\r": " ",
};

/** Greek and Cyrillic (SEPA has Greek and Bulgarian debtors), letter by letter (ELOT 743 / Streamlined System). */
const SCRIPT: Readonly<Record<string, string>> = Object.fromEntries(
  [
    ..."α:a β:v γ:g δ:d ε:e ζ:z η:i θ:th ι:i κ:k λ:l μ:m ν:n ξ:x ο:o π:p ρ:r σ:s ς:s τ:t υ:y φ:f χ:ch ψ:ps ω:o".split(
      " ",
    ),
    ..."а:a б:b в:v г:g д:d е:e ж:zh з:z и:i й:y к:k л:l м:m н:n о:o п:p р:r с:s т:t у:u ф:f х:h ц:ts ч:ch ш:sh щ:sht ъ:a ь:y ю:yu я:ya ё:yo ы:y э:e є:ye і:i ї:yi ґ:g".split(
      " ",
    ),
  ].flatMap((pair) => {
    const [from, to] = pair.split(":") as [string, string];
    const upper = to.charAt(0).toUpperCase() + to.slice(1);
    return [
      [from, to],
      [from.toUpperCase(), upper],
    ];
  }),
);

/**
 * Turns any text into the SEPA character set: umlauts and other letters are transliterated
 * ("Müller" → "Mueller", "Łódź" → "Lodz", "Σοφία" → "Sofia"), anything left becomes a space,
 * runs of spaces collapse. Never throws: a name is never refused for its spelling.
 */
export function toSepaText(text: string, maxLength?: number): string {
  let out = "";
  // Greek "ου" is one sound: "ou" (ELOT 743), not "oy".
  const prepared = text
    .normalize("NFC")
    .replace(/([οΟ])([υύΥ])/g, (_, o: string, u: string) =>
      o === "Ο" ? (u === "Υ" ? "OU" : "Ou") : "ou",
    );
  for (const char of prepared) {
    if (SEPA_CHAR.test(char)) {
      out += char;
      continue;
    }
    const mapped = SPECIAL[char] ?? SCRIPT[char];
    if (mapped !== undefined) {
      out += mapped;
      continue;
    }
    const base = char.normalize("NFD").replace(/\p{M}/gu, "");
    if (base.length > 0 && SEPA_TEXT.test(base)) out += base;
    else out += SCRIPT[base] ?? " ";
  }
  out = out.replace(/ {2,}/g, " ").trim();
  if (maxLength !== undefined && out.length > maxLength) out = out.slice(0, maxLength).trimEnd();
  return out;
}

export function isSepaText(text: string): boolean {
  return SEPA_TEXT.test(text);
}

/**
 * Identifiers (message, payment-information, end-to-end and mandate ids): 1 to 35 characters of the
 * SEPA set, no leading or trailing slash, no double slash, no space at either end.
 */
export function sepaIdProblem(id: string, what: string): string | undefined {
  if (id.length === 0) return `${what} is empty`;
  if (id.length > 35)
    return `${what} "${id}" is ${id.length} characters long; at most 35 are allowed`;
  if (!SEPA_TEXT.test(id)) return `${what} "${id}" has characters outside the SEPA set`;
  if (id.startsWith("/") || id.endsWith("/") || id.includes("//")) {
    return `${what} "${id}" must not start or end with "/" nor contain "//"`;
  }
  if (id !== id.trim()) return `${what} "${id}" must not start or end with a space`;
  return undefined;
}

export function assertSepaId(id: string, what: string): void {
  const problem = sepaIdProblem(id, what);
  if (problem) throw new ValidationError(problem);
}

const IBAN_PROBLEMS: Readonly<Record<number, string>> = {
  [ValidationErrorsIBAN.NoIBANProvided]: "no IBAN given",
  [ValidationErrorsIBAN.NoIBANCountry]: "unknown country code",
  [ValidationErrorsIBAN.WrongBBANLength]: "wrong length for its country",
  [ValidationErrorsIBAN.WrongBBANFormat]: "wrong account format for its country",
  [ValidationErrorsIBAN.ChecksumNotNumber]: "check digits are not a number",
  [ValidationErrorsIBAN.WrongIBANChecksum]: "check digits do not match",
  [ValidationErrorsIBAN.WrongAccountBankBranchChecksum]:
    "national account check digits do not match",
  [ValidationErrorsIBAN.QRIBANNotAllowed]: "QR-IBANs cannot be debited",
};

/** Returns the IBAN in electronic format (upper case, no spaces) or throws with the reason. */
export function normaliseIban(input: string): string {
  const iban = electronicFormatIBAN(input) ?? "";
  const result = validateIBAN(iban);
  if (!result.valid) {
    const reasons = result.errorCodes.map((code) => IBAN_PROBLEMS[code] ?? `error ${code}`);
    throw new ValidationError(`invalid IBAN "${input}": ${reasons.join(", ")}`);
  }
  if (!isSEPACountry(iban.slice(0, 2))) {
    throw new ValidationError(`IBAN "${input}" is not from a SEPA country`);
  }
  return iban;
}

export function normaliseBic(input: string): string {
  const bic = input.replace(/\s+/g, "").toUpperCase();
  if (!isValidBIC(bic)) throw new ValidationError(`invalid BIC "${input}"`);
  return bic;
}

/** EU member states, Iceland, Liechtenstein and Norway: debtors elsewhere in SEPA need a BIC and an address. */
const EEA = new Set(
  (
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK IS LI NO " +
    // Overseas parts that use their parent state's scheme membership.
    "GF GP MQ YT RE PM BL MF AX"
  ).split(" "),
);

export function isEeaCountry(countryCode: string): boolean {
  return EEA.has(countryCode.toUpperCase());
}

function mod97(digits: string): number {
  let rest = 0;
  for (const char of digits) rest = (rest * 10 + Number(char)) % 97;
  return rest;
}

function lettersToDigits(text: string): string {
  return text.replace(/[A-Z]/g, (letter) => String(letter.charCodeAt(0) - 55));
}

/**
 * Validates a SEPA creditor identifier: country code, two ISO 7064 MOD 97-10 check digits, a
 * three-character business code (ignored by the check) and the national identifier.
 * Returns it upper case without spaces.
 */
export function normaliseCreditorId(input: string): string {
  const id = input.replace(/\s+/g, "").toUpperCase();
  const shape = /^([A-Z]{2})(\d{2})([A-Z0-9]{3})([A-Z0-9]{1,28})$/.exec(id);
  if (!shape) {
    throw new ValidationError(
      `invalid creditor identifier "${input}": expected country code, two check digits, a three-character business code and the national identifier (e.g. DE98ZZZ09999999999)`,
    );
  }
  const [, country, check, , national] = shape as unknown as [
    string,
    string,
    string,
    string,
    string,
  ];
  if (!isSEPACountry(country)) {
    throw new ValidationError(
      `invalid creditor identifier "${input}": ${country} is not a SEPA country`,
    );
  }
  if (mod97(lettersToDigits(`${national}${country}${check}`)) !== 1) {
    const expected = String(98 - mod97(lettersToDigits(`${national}${country}00`))).padStart(
      2,
      "0",
    );
    throw new ValidationError(
      `invalid creditor identifier "${input}": check digits ${check} do not match (ISO 7064 MOD 97-10 gives ${expected})`,
    );
  }
  return id;
}

/** Scheme limits of SEPA Core Direct Debit: 0.01 to 999,999,999.99 EUR per transaction. */
export const MIN_CENTS = 1n;
export const MAX_CENTS = 99_999_999_999n;

/** Formats integer cents as the XML amount, always with two decimals ("12.30"). */
export function formatCents(cents: bigint): string {
  if (cents < 0n) throw new ValidationError(`negative amount ${cents}`);
  const whole = cents / 100n;
  const fraction = (cents % 100n).toString().padStart(2, "0");
  return `${whole}.${fraction}`;
}

/** Parses an XML amount ("12.3", "12.30") into integer cents; more than two decimals must be zeros. */
export function parseCents(text: string): bigint {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!match) throw new ValidationError(`not an amount: "${text}"`);
  const fraction = (match[2] ?? "").padEnd(2, "0");
  if (/[^0]/.test(fraction.slice(2)))
    throw new ValidationError(`amount "${text}" has fractions of a cent`);
  return BigInt(match[1]!) * 100n + BigInt(fraction.slice(0, 2));
}

/**
 * Converts a token amount (smallest units) to euro cents, rounding up: the bank collects at least
 * the debt, never less, so a collected debit always clears it.
 */
export function tokenUnitsToCents(amount: bigint, decimals: number): bigint {
  if (decimals <= 2) return amount * 10n ** BigInt(2 - decimals);
  const unit = 10n ** BigInt(decimals - 2);
  return (amount + unit - 1n) / unit;
}
