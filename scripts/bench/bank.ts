/**
 * Export benchmark: 10,000 open direct-debit requests (as synced from the chain) with their
 * mandates in the bridge's store, then one timed `exportBatch`: the store query, the SEPA rules,
 * the pain.008 writing, the validation against the ISO schema and the file on disk. Prints the
 * figures and their ratio to the 5 s target, and writes reports/bank.json.
 *
 *   npm run bench:bank                 # 10,000 debits
 *   BENCH_DEBITS=1000 npm run bench:bank
 */
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, relative } from "node:path";
import { performance } from "node:perf_hooks";
import { electronicFormatIBAN, composeIBAN } from "ibantools";
import type { Address, Hex } from "viem";
import { BankBridge } from "../../services/bank/bridge.ts";
import { REPO_ROOT } from "../../services/shared/artifacts.ts";
import { openDatabase } from "../../services/shared/db.ts";
import { DEMO_CREDITOR } from "../../services/sim/bank.ts";

const DEBITS = Number(process.env.BENCH_DEBITS ?? 10_000);
const TARGET_SECONDS = 5;
const TOKEN = "0x00000000000000000000000000000000000e0c00" as Address;
const CONTRACT = "0x5fbdb2315678afecb367f032d93f642f64180aa3" as Address;

const NAMES = [
  "Jörg Müller",
  "Zoë Ærøskøbing",
  "Łukasz Żółć & Söhne",
  "Σοφία Παπαδοπούλου",
  "Ana Conceição",
];

function iban(index: number): string {
  const account = String(1_000_000_000 + index).padStart(10, "0");
  return electronicFormatIBAN(
    composeIBAN({ countryCode: "DE", bban: `37040044${account}` }) ?? "",
  )!;
}

async function main(): Promise<void> {
  const outDir = join(REPO_ROOT, "reports", "bank");
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const db = await openDatabase();
  const bridge = await BankBridge.open({
    db,
    contract: CONTRACT,
    creditor: DEMO_CREDITOR,
    eurTokens: [TOKEN],
    outDir,
  });

  process.stderr.write(`… storing ${DEBITS} mandates and open requests\n`);
  const mandates = await bridge.addMandates(
    Array.from({ length: DEBITS }, (_, i) => ({
      mandateId: `PPU-M-${String(i).padStart(29, "0")}`, // 35 characters, the longest allowed
      signedOn: "2026-10-01",
      debtorName: `${NAMES[i % NAMES.length]} ${i}`,
      iban: iban(i),
      address:
        i % 2 === 0
          ? {
              street: "Domstraße",
              buildingNumber: String(i % 400),
              postCode: "50667",
              town: "Köln",
              country: "DE",
            }
          : { town: "München", country: "DE", lines: [`Marienplatz ${i % 90}`] },
    })),
  );
  const dueDate = BigInt(Math.floor(Date.now() / 1000) + 2 * 86_400);
  await bridge.recordRequests(
    mandates.map((mandate, i) => ({
      debitId: BigInt(i + 1),
      agreementId: BigInt(i + 1),
      mandateRef: mandate.mandateRef as Hex,
      token: TOKEN,
      tokenDecimals: 6,
      // From one cent to the scheme's maximum of 999,999,999.99 EUR.
      amount:
        i === 0
          ? 10_000n
          : i === 1
            ? 999_999_999_990_000n
            : BigInt(1 + ((i * 7_919) % 500_000)) * 10_000n + 1n,
      dueDate,
    })),
  );

  process.stderr.write(`… exporting\n`);
  const started = performance.now();
  const report = await bridge.exportBatch();
  const seconds = (performance.now() - started) / 1000;
  await db.close();
  if (report.debits !== DEBITS || !report.file) {
    throw new Error(`expected ${DEBITS} debits in the file, got ${report.debits}`);
  }

  const file = relative(REPO_ROOT, report.file);
  const result = {
    debits: report.debits,
    seconds: Number(seconds.toFixed(3)),
    file,
    bytes: statSync(report.file).size,
    batches: report.batches.length,
    controlSum: report.controlSum,
    schema: report.schema,
    targetSeconds: TARGET_SECONDS,
    ratioToTarget: Number((seconds / TARGET_SECONDS).toFixed(3)),
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? "unknown CPU"}`,
    node: process.version,
    date: new Date().toISOString(),
  };
  writeFileSync(join(REPO_ROOT, "reports", "bank.json"), `${JSON.stringify(result, null, 2)}\n`);
  console.log(
    `pain.008 export of ${result.debits} debits: ${result.seconds} s (target ≤ ${TARGET_SECONDS} s, ratio ${result.ratioToTarget})`,
  );
  console.log(
    `  ${file}: ${(result.bytes / 1e6).toFixed(1)} MB, ${result.batches} payment information block(s), ${result.controlSum} EUR`,
  );
  console.log(`  ${result.schema}`);
  console.log(`  ${result.machine}, Node ${result.node}`);
  console.log("  wrote reports/bank.json");
}

await main();
