/**
 * `ppu bank …`: mandates, following the chain's direct-debit requests, pain.008 export and
 * camt.054 import. Each command prints what it did; `--json` prints the same as JSON.
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import type { Command } from "commander";
import { describeConfig } from "../shared/config.ts";
import type { BankBridge, ExportReport, ImportReport, SyncReport } from "./bridge.ts";
import { bankConfigSpec, openBankBridge } from "./config.ts";

type Print = (line: string) => void;

async function withBridge(
  needChain: boolean,
  work: (bridge: BankBridge) => Promise<void>,
): Promise<void> {
  const { bridge, close } = await openBankBridge(process.env, { needChain });
  try {
    await work(bridge);
  } finally {
    await close();
  }
}

export function printSync(report: SyncReport, print: Print): void {
  print(
    `synced blocks ${report.fromBlock}–${report.toBlock}: ${report.requested} new request(s), ${report.collected} collected, ${report.returned} returned`,
  );
}

export function printExport(report: ExportReport, print: Print): void {
  for (const file of report.recovered ?? []) {
    print(`wrote ${relative(process.cwd(), file) || file}, planned before an interruption`);
  }
  if (!report.file) {
    print("nothing to export: no open direct-debit request can be collected");
  } else {
    print(`wrote ${relative(process.cwd(), report.file) || report.file}`);
    print(`  message ${report.messageId}: ${report.debits} debit(s), ${report.controlSum} EUR`);
    for (const batch of report.batches) {
      print(
        `  ${batch.sequenceType} collection on ${batch.collectionDate}: ${batch.debits} debit(s), ${batch.controlSum} EUR`,
      );
    }
    if (report.schema) print(`  ${report.schema}`);
  }
  for (const skip of report.skipped) print(`  not exported: debit ${skip.debitId}: ${skip.reason}`);
}

export function printImport(report: ImportReport, print: Print): void {
  print(
    `imported ${report.version} message ${report.messageId}${report.resumed ? " (resumed an interrupted import)" : ""}`,
  );
  for (const c of report.collected) {
    print(
      `  collected debit ${c.debitId} (${c.endToEndId}), ${c.amount} EUR${c.tx ? `: confirmed in ${c.tx}` : ""}`,
    );
  }
  for (const r of report.returned) {
    print(
      `  ${r.afterCollection ? "refunded" : "returned"} debit ${r.debitId} (${r.endToEndId}), ${r.amount} EUR, reason ${r.reasonCode}${r.tx ? `: reported in ${r.tx}` : ""}`,
    );
  }
  for (const line of report.alreadyApplied) print(`  already applied: ${line}`);
  for (const line of report.ignored) print(`  ignored: ${line}`);
  for (const line of report.warnings) print(`  warning: ${line}`);
  if (report.collected.length + report.returned.length === 0) print("  no changes");
}

export function registerBankCommands(program: Command): void {
  const bank = program
    .command("bank")
    .description("SEPA bank bridge: mandates, pain.008 export, camt.054 import")
    .addHelpText(
      "after",
      `\nSettings (environment variables):\n${describeConfig(bankConfigSpec)}\n`,
    );
  const out = (json: boolean | undefined, value: unknown, text: () => void) => {
    if (json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    else text();
  };
  const print: Print = (line) => process.stdout.write(`${line}\n`);

  const mandate = bank.command("mandate").description("SEPA mandates, kept off-chain");
  mandate
    .command("add")
    .description("validate and store a mandate; prints the reference the lessee attaches on-chain")
    .argument("<file>", "JSON file: mandateId, signedOn, debtorName, iban, bic?, address{…}, kind?")
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      `\nExample mandate.json:\n  {"mandateId": "PPU-M-0001", "signedOn": "2026-11-02", "debtorName": "Jörg Müller",\n   "iban": "DE89 3704 0044 0532 0130 00", "address": {"street": "Domstraße", "buildingNumber": "1",\n   "postCode": "50667", "town": "Köln", "country": "DE"}}\n\n  $ ppu bank mandate add mandate.json`,
    )
    .action(async (file: string, options: { json?: boolean }) => {
      const input = JSON.parse(readFileSync(file, "utf8")) as unknown;
      await withBridge(false, async (bridge) => {
        const added = await bridge.addMandate(input);
        out(options.json, { mandateId: added.mandateId, mandateRef: added.mandateRef }, () => {
          print(`added mandate ${added.mandateId} for ${added.debtorName}`);
          print(`  on-chain reference: ${added.mandateRef}`);
          print(`  the lessee attaches it with setMandate(agreementId, ${added.mandateRef})`);
        });
      });
    });
  mandate
    .command("list")
    .description("list mandates (IBANs shortened)")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      await withBridge(false, async (bridge) => {
        const all = await bridge.mandates();
        const rows = all.map((m) => ({
          mandateId: m.mandateId,
          mandateRef: m.mandateRef,
          debtor: m.debtorName,
          iban: `${m.iban.slice(0, 4)}…${m.iban.slice(-4)}`,
          kind: m.kind,
          revoked: Boolean(m.revokedAt),
        }));
        out(options.json, rows, () => {
          if (rows.length === 0) print("no mandates");
          for (const r of rows) {
            print(
              `${r.mandateId}  ${r.mandateRef}  ${r.debtor}  ${r.iban}  ${r.kind}${r.revoked ? "  revoked" : ""}`,
            );
          }
        });
      });
    });
  mandate
    .command("revoke")
    .description("mark a mandate revoked: its open debits are no longer exported")
    .argument("<mandate>", "mandate id or on-chain reference")
    .action(async (id: string) => {
      await withBridge(false, async (bridge) => {
        const revoked = await bridge.revokeMandate(id);
        print(`revoked mandate ${revoked.mandateId} (${revoked.mandateRef})`);
      });
    });

  bank
    .command("sync")
    .description("read direct-debit requests, collections and returns from the chain")
    .option("--json", "print JSON")
    .action(async (options: { json?: boolean }) => {
      await withBridge(true, async (bridge) => {
        const report = await bridge.sync((done, total) => {
          if (total > 50_000n) process.stderr.write(`… ${done}/${total} blocks\n`);
        });
        out(options.json, report, () => printSync(report, print));
      });
    });

  bank
    .command("export")
    .description("write a pain.008.001.08 file for every open request that can be collected")
    .option("--no-sync", "export what was synced before, without reading the chain")
    .option("--json", "print JSON")
    .addHelpText(
      "after",
      "\nExample:\n  $ ppu bank export\n  wrote .data/bank/out/pain.008-PPU-20261125120000-000001.xml",
    )
    .action(async (options: { sync: boolean; json?: boolean }) => {
      await withBridge(options.sync, async (bridge) => {
        const synced = options.sync ? await bridge.sync() : undefined;
        const report = await bridge.exportBatch();
        out(options.json, { sync: synced, export: report }, () => {
          if (synced) printSync(synced, print);
          printExport(report, print);
        });
      });
    });

  bank
    .command("import")
    .description(
      "reconcile a camt.054 notification: confirm collections and report returns on-chain",
    )
    .argument("<file>", "camt.054.001.08 or camt.054.001.02 XML")
    .option("--json", "print JSON")
    .action(async (file: string, options: { json?: boolean }) => {
      const xml = readFileSync(file, "utf8");
      await withBridge(true, async (bridge) => {
        await bridge.sync();
        const report = await bridge.importStatement(xml, file);
        out(options.json, report, () => printImport(report, print));
      });
    });

  bank
    .command("debits")
    .description("list direct debits and where each stands")
    .option("--state <state>", "open, exported, collected or returned")
    .option("--json", "print JSON")
    .action(async (options: { state?: string; json?: boolean }) => {
      await withBridge(false, async (bridge) => {
        const rows = await bridge.debits(options.state ? { state: options.state } : {});
        out(options.json, rows, () => {
          if (rows.length === 0) print("no debits");
          for (const r of rows) {
            print(
              `debit ${String(r.debit_id)}  agreement ${String(r.agreement_id)}  ${String(r.state)}${r.cents ? `  ${String(r.cents)} ct` : ""}${r.end_to_end_id ? `  ${String(r.end_to_end_id)}` : ""}${r.problem ? `  (${String(r.problem)})` : ""}`,
            );
          }
        });
      });
    });
}
