/**
 * `ppu bank …` through the real entry point against a real chain: settings in --help, clear errors
 * for bad settings and bad mandates, then a mandate, an export and an import, each printing what
 * it did, with the store kept on disk between the commands.
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Hex } from "viem";
import { addDays } from "../../services/bank/calendar.ts";
import { signReading } from "../../services/shared/signatures.ts";
import { readPain008, writeCamt054 } from "../../services/sim/bank.ts";
import { CREDITOR, mandateInput, mint } from "../bank/fixtures.ts";
import { startHarness, type Harness } from "../oracle/harness.ts";

const run = promisify(execFile);

describe("ppu bank", function () {
  let h: Harness;
  const dir = mkdtempSync(join(tmpdir(), "ppu-bank-cli-"));
  let env: Record<string, string>;

  async function ppu(
    args: string[],
    extraEnv: Record<string, string> = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(
        process.execPath,
        ["--import", "tsx", "scripts/ppu.ts", ...args],
        { env: { ...process.env, ...env, ...extraEnv } },
      );
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  before(async function () {
    h = await startHarness([{ keyType: "secp256k1", privateKey: `0x${"42".repeat(32)}` as Hex }]);
    env = {
      RPC_URL: h.chain.rpcUrl,
      CONTRACT_ADDRESS: h.payPerUse,
      BANK_PRIVATE_KEY: h.chain.accounts[1]!.privateKey,
      BANK_EUR_TOKENS: h.token,
      CREDITOR_NAME: "Maschinenpark Nord GmbH",
      CREDITOR_IBAN: CREDITOR.iban,
      CREDITOR_BIC: CREDITOR.bic!,
      CREDITOR_ID: CREDITOR.creditorId,
      CREDITOR_TOWN: "Hamburg",
      CREDITOR_COUNTRY: "DE",
      BANK_OUT_DIR: join(dir, "out"),
      BANK_DATA_DIR: join(dir, "db"),
    };
  });

  after(async () => {
    await h?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists its commands and every setting in --help", async () => {
    const { code, stdout } = await ppu(["bank", "--help"]);
    expect(code).to.equal(0);
    for (const word of [
      "mandate",
      "export",
      "import",
      "sync",
      "CREDITOR_ID",
      "BANK_EUR_TOKENS",
      "BANK_LEAD_DAYS",
    ]) {
      expect(stdout).to.include(word);
    }
  });

  it("refuses bad settings and a bad mandate with the reason, storing nothing", async () => {
    const settings = await ppu(["bank", "mandate", "list"], {
      CREDITOR_ID: "DE97ZZZ09999999999",
      CREDITOR_IBAN: "DE02120300000000202052",
    });
    expect(settings.code).to.equal(1);
    expect(settings.stderr).to.match(/check digits 97 do not match/);
    expect(settings.stderr).to.match(/invalid IBAN "DE02120300000000202052"/);

    const file = join(dir, "bad-mandate.json");
    writeFileSync(file, JSON.stringify(mandateInput(0, { iban: "DE89370400440532013001" })));
    const bad = await ppu(["bank", "mandate", "add", file]);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/mandate PPU-M-0000 is not valid[\s\S]*check digits do not match/);
    expect((await ppu(["bank", "mandate", "list"])).stdout).to.match(/^no mandates/);
  });

  it("adds a mandate, exports the debit of an exhausted escrow and imports the bank's answer", async () => {
    const file = join(dir, "mandate.json");
    writeFileSync(file, JSON.stringify(mandateInput(0)));
    const added = await ppu(["bank", "mandate", "add", file, "--json"]);
    expect(added.code, added.stderr).to.equal(0);
    const { mandateRef } = JSON.parse(added.stdout) as { mandateRef: Hex };

    const [machine] = h.machines;
    await h.write(
      "setMandate",
      [machine!.agreementId, mandateRef],
      h.chain.accounts[3]!.privateKey,
    );
    const reading = {
      agreementId: machine!.agreementId,
      machineId: machine!.machineId,
      cumulativeUnits: 4_400_000n, // 1,100 EUR against a 1,000 EUR escrow
      timestamp: BigInt(Math.floor(Date.now() / 1000) + h.clockOffset),
    };
    await h.write("record", [
      [{ reading, signature: signReading(h.domain, reading, machine!.key!) }],
    ]);
    await h.write("settle", [[machine!.agreementId]]);

    const exported = await ppu(["bank", "export"]);
    expect(exported.code, exported.stderr).to.equal(0);
    expect(exported.stdout).to.match(/synced blocks 0–\d+: 1 new request\(s\)/);
    expect(exported.stdout).to.match(/wrote .*pain\.008-PPU-\d{14}-000001\.xml/);
    expect(exported.stdout).to.match(/1 debit\(s\), 100\.00 EUR/);
    expect(exported.stdout).to.match(/FRST collection on \d{4}-\d{2}-\d{2}: 1 debit\(s\)/);
    expect(exported.stdout).to.match(/valid against pain\.008\.001\.08/);
    const painPath = /wrote (\S+)/.exec(exported.stdout)![1]!;

    const [debit] = readPain008(readFileSync(painPath, "utf8"));
    const camt = join(dir, "camt.xml");
    writeFileSync(
      camt,
      writeCamt054({
        version: "camt.054.001.02",
        messageId: "BANK-CLI-1",
        createdAt: new Date(),
        accountIban: CREDITOR.iban,
        entries: [{ ...debit!, direction: "CRDT", bookingDate: debit!.collectionDate }],
      }),
    );
    // The bank's account has no tokens yet: the import stops with the token's reason.
    const refused = await ppu(["bank", "import", camt]);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(
      /confirmDirectDebit\(1\) was refused: .*erc20 insufficient balance/,
    );

    await mint(h, h.chain.accounts[1]!.address, 10n ** 12n);
    const imported = await ppu(["bank", "import", camt]);
    expect(imported.code, imported.stderr).to.equal(0);
    expect(imported.stdout).to.match(
      /imported camt\.054\.001\.02 message BANK-CLI-1 \(resumed an interrupted import\)/,
    );
    expect(imported.stdout).to.match(
      /collected debit 1 \(PPU-[0-9A-F]{8}-1\), 100\.00 EUR: confirmed in 0x[0-9a-f]{64}/,
    );

    const again = await ppu(["bank", "import", camt]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.match(/already imported: message BANK-CLI-1/);

    const debits = await ppu(["bank", "debits"]);
    expect(debits.stdout).to.match(/debit 1 {2}agreement \d+ {2}collected {2}10000 ct/);

    // A refund the debtor's bank granted ten weeks after the collection: reported, with a warning.
    const late = join(dir, "camt-refund.xml");
    writeFileSync(
      late,
      writeCamt054({
        version: "camt.054.001.08",
        messageId: "BANK-CLI-2",
        createdAt: new Date(),
        accountIban: CREDITOR.iban,
        entries: [
          {
            ...debit!,
            direction: "DBIT",
            bookingDate: addDays(debit!.collectionDate, 70),
            reasonCode: "MD06",
          },
        ],
      }),
    );
    const refunded = await ppu(["bank", "import", late]);
    expect(refunded.code, refunded.stderr).to.equal(0);
    expect(refunded.stdout).to.match(
      /refunded debit 1 \(PPU-[0-9A-F]{8}-1\), 100\.00 EUR, reason MD06: reported in 0x/,
    );
    expect(refunded.stdout).to.match(
      /warning: .*refund 70 days after the collection, beyond the 8 weeks/,
    );
  });
});
