/**
 * Collection dates: SEPA direct debits settle on TARGET2 business days (every day but Saturdays,
 * Sundays, New Year's Day, Good Friday, Easter Monday, 1 May, 25 and 26 December), and a creditor's
 * calendar day is the one in Europe/Berlin, whatever the server's time zone.
 */

/** A calendar date as "YYYY-MM-DD". */
export type IsoDate = string;

const BERLIN = new Intl.DateTimeFormat("en-CA", {
  timeZone: "Europe/Berlin",
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
});

/** The calendar date in Europe/Berlin at an instant. */
export function berlinDate(instant: Date): IsoDate {
  return BERLIN.format(instant);
}

/** Easter Sunday of the Gregorian calendar (anonymous Gregorian algorithm), as UTC midnight. */
export function easterSunday(year: number): Date {
  const a = year % 19;
  const b = Math.floor(year / 100);
  const c = year % 100;
  const d = Math.floor(b / 4);
  const e = b % 4;
  const f = Math.floor((b + 8) / 25);
  const g = Math.floor((b - f + 1) / 3);
  const h = (19 * a + b - d - g + 15) % 30;
  const i = Math.floor(c / 4);
  const k = c % 4;
  const l = (32 + 2 * e + 2 * i - h - k) % 7;
  const m = Math.floor((a + 11 * h + 22 * l) / 451);
  const month = Math.floor((h + l - 7 * m + 114) / 31);
  const day = ((h + l - 7 * m + 114) % 31) + 1;
  return new Date(Date.UTC(year, month - 1, day));
}

function toDate(date: IsoDate): Date {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) throw new Error(`not a date: "${date}"`);
  return new Date(`${date}T00:00:00Z`);
}

function toIso(date: Date): IsoDate {
  return date.toISOString().slice(0, 10);
}

export function addDays(date: IsoDate, days: number): IsoDate {
  const next = toDate(date);
  next.setUTCDate(next.getUTCDate() + days);
  return toIso(next);
}

const holidayCache = new Map<number, Set<IsoDate>>();

function holidays(year: number): Set<IsoDate> {
  let set = holidayCache.get(year);
  if (!set) {
    const easter = toIso(easterSunday(year));
    set = new Set([
      `${year}-01-01`,
      addDays(easter, -2),
      addDays(easter, 1),
      `${year}-05-01`,
      `${year}-12-25`,
      `${year}-12-26`,
    ]);
    holidayCache.set(year, set);
  }
  return set;
}

export function isTargetBusinessDay(date: IsoDate): boolean {
  const day = toDate(date).getUTCDay();
  if (day === 0 || day === 6) return false;
  return !holidays(Number(date.slice(0, 4))).has(date);
}

/** The first TARGET2 business day on or after a date. */
export function nextBusinessDayOnOrAfter(date: IsoDate): IsoDate {
  let current = date;
  while (!isTargetBusinessDay(current)) current = addDays(current, 1);
  return current;
}

/** The date `count` TARGET2 business days after a date (count 0 = the date itself if it is one). */
export function addBusinessDays(date: IsoDate, count: number): IsoDate {
  let current = nextBusinessDayOnOrAfter(date);
  for (let i = 0; i < count; i++) current = nextBusinessDayOnOrAfter(addDays(current, 1));
  return current;
}

/**
 * The requested collection date of a debit: no earlier than the date it is due (in Berlin), and at
 * least `leadDays` TARGET2 business days after the day the file is handed to the bank (the
 * SEPA Core rulebook's D-1 for every sequence type), on a business day.
 */
export function collectionDate(dueAt: Date, exportedAt: Date, leadDays: number): IsoDate {
  const earliest = addBusinessDays(berlinDate(exportedAt), leadDays);
  const due = nextBusinessDayOnOrAfter(berlinDate(dueAt));
  return due > earliest ? due : earliest;
}
