/**
 * The oracle's key in an encrypted key file: created with `ppu oracle keystore create` (a fresh key or
 * an imported one, mode 0600, never overwritten, the password never on the command line), refused
 * with a clear error for a wrong or missing password, and used by a running oracle whose attested
 * readings get settled — without the key or the password appearing in its output.
 */
import { expect } from "chai";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { privateKeyToAccount } from "viem/accounts";
import { loadOracleConfig } from "../../services/oracle/config.ts";
import { startEmbeddedBroker, type EmbeddedBroker } from "../../services/oracle/embedded-broker.ts";
import { decryptKeystore } from "../../services/oracle/keystore.ts";
import { MachineSide, readingMessage, startHarness, type Harness } from "./harness.ts";

const run = promisify(execFile);

async function ppu(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { ORACLE_KEYSTORE_PASSWORD: _ignored, ...inherited } = process.env;
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ["--import", "tsx", "scripts/ppu.ts", ...args],
      { env: { ...inherited, ...env } },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("oracle keystore", function () {
  const dir = mkdtempSync(join(tmpdir(), "ppu-oracle-keystore-"));
  const password = "correct horse battery staple";
  const passwordFile = join(dir, "password");
  const keyFile = join(dir, "oracle.key");
  const keystore = join(dir, "oracle.json");
  let h: Harness;
  let broker: EmbeddedBroker | undefined;
  let side: MachineSide | undefined;
  let oracle: ChildProcess | undefined;

  before(async () => {
    h = await startHarness();
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    writeFileSync(keyFile, `${h.oracleKey}\n`, { mode: 0o600 });
  });

  after(async () => {
    if (oracle && oracle.exitCode === null) {
      const exited = new Promise((resolve) => oracle!.once("exit", resolve));
      oracle.kill("SIGKILL");
      await exited;
    }
    await side?.close();
    await broker?.stop();
    await h?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates a key file with the command: imported or fresh, mode 0600, never overwritten", async () => {
    const oracleAddress = privateKeyToAccount(h.oracleKey).address;
    const imported = await ppu([
      "oracle",
      "keystore",
      "create",
      "--out",
      keystore,
      "--key-file",
      keyFile,
      "--password-file",
      passwordFile,
    ]);
    expect(imported.code, imported.stderr).to.equal(0);
    expect(imported.stdout).to.include(`address ${oracleAddress}`);
    expect(statSync(keystore).mode & 0o777).to.equal(0o600);
    const content = readFileSync(keystore, "utf8");
    expect(JSON.parse(content).version).to.equal(3);
    expect(content.toLowerCase()).not.to.include(h.oracleKey.slice(2).toLowerCase());
    expect(imported.stdout + imported.stderr).not.to.include(h.oracleKey.slice(2));

    // A second run must not replace the file (the key in it may be the only copy).
    const again = await ppu([
      "oracle",
      "keystore",
      "create",
      "--out",
      keystore,
      "--password-file",
      passwordFile,
    ]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.match(/Refusing to overwrite/);
    expect(readFileSync(keystore, "utf8")).to.equal(content);

    // No password, and no way to give it on the command line.
    const fresh = join(dir, "fresh.json");
    const missing = await ppu(["oracle", "keystore", "create", "--out", fresh]);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/No password: set ORACLE_KEYSTORE_PASSWORD/);
    const onArgv = await ppu(["oracle", "keystore", "create", "--out", fresh, "--password", "x"]);
    expect(onArgv.code).to.equal(1);
    expect(onArgv.stderr).to.match(/unknown option '--password'/);

    // A fresh key, the password from the environment.
    const created = await ppu(["oracle", "keystore", "create", "--out", fresh], {
      ORACLE_KEYSTORE_PASSWORD: "another password",
    });
    expect(created.code, created.stderr).to.equal(0);
    const address = /address (0x[0-9a-fA-F]{40})/.exec(created.stdout)?.[1];
    expect(address).to.match(/^0x/);
    expect(address).not.to.equal(oracleAddress);
    expect(statSync(fresh).mode & 0o777).to.equal(0o600);
    expect(decryptKeystore(fresh, "another password").address).to.equal(address);
  });

  it("refuses a wrong or missing password with a clear error that shows no key", () => {
    const base = {
      RPC_URL: h.chain.rpcUrl,
      CONTRACT_ADDRESS: h.payPerUse,
      ORACLE_KEYSTORE: keystore,
      DATA_DIR: "memory",
    };
    const failure = (env: Record<string, string>) => {
      try {
        loadOracleConfig({ ...base, ...env });
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error("the configuration was accepted");
    };
    const wrong = failure({ ORACLE_KEYSTORE_PASSWORD: "not the password" });
    expect(wrong).to.match(/^Wrong password for the keystore/);
    expect(wrong).not.to.include(h.oracleKey.slice(2));
    expect(wrong).not.to.include("not the password");
    expect(failure({})).to.match(/needs its password[\s\S]*ORACLE_KEYSTORE_PASSWORD_FILE/);
    expect(
      failure({ ORACLE_KEYSTORE_PASSWORD: password, ORACLE_KEYSTORE_PASSWORD_FILE: passwordFile }),
    ).to.match(/password is set twice/);
    expect(
      failure({ ORACLE_KEYSTORE_PASSWORD: password, ORACLE_PRIVATE_KEY: h.oracleKey }),
    ).to.match(/More than one oracle key/);
    expect(
      loadOracleConfig({ ...base, ORACLE_KEYSTORE_PASSWORD_FILE: passwordFile }).privateKey,
    ).to.equal(h.oracleKey);
  });

  it("runs an oracle from the key file: its attested reading is settled, the key never printed", async () => {
    broker = await startEmbeddedBroker();
    side = await MachineSide.connect(broker.url, [h.attested], 4);
    oracle = spawn(process.execPath, ["--import", "tsx", "services/oracle/main.ts"], {
      env: {
        ...process.env,
        RPC_URL: h.chain.rpcUrl,
        CONTRACT_ADDRESS: h.payPerUse,
        ORACLE_KEYSTORE: keystore,
        ORACLE_KEYSTORE_PASSWORD_FILE: passwordFile,
        ORACLE_KEYSTORE_PASSWORD: "",
        ORACLE_PRIVATE_KEY: "",
        MQTT_URL: broker.url,
        MQTT_PROTOCOL_VERSION: "4",
        DATA_DIR: "memory",
        HEALTH_PORT: "0",
        BATCH_INTERVAL_MS: "150",
        CHAIN_POLL_MS: "150",
        LOG_LEVEL: "debug",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    oracle.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    oracle.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => oracle!.once("exit", resolve));
    const deadline = Date.now() + 60_000;
    while (!output.includes("oracle listening")) {
      if (oracle.exitCode !== null || Date.now() > deadline) {
        throw new Error(`the oracle did not start:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    // Attested readings are signed by the oracle's key: settling one proves the key was decrypted.
    await side.publish(h.attested, readingMessage(h, h.attested, 8_000n));
    const settled = await side.waitFor(
      (s) => s.state === "settled" && s.cumulativeUnits === "8000",
      "settled 8000",
    );
    expect(settled.txHash).to.match(/^0x[0-9a-f]{64}$/);
    const agreement = await h.agreement(h.attested.agreementId);
    expect(agreement.cumulativeUnits).to.equal(8_000n);
    expect(agreement.totalCharged).to.equal(2_000_000n);

    oracle.kill("SIGTERM");
    expect(await exited).to.equal(0);
    expect(output).to.include("oracle started"); // its log was captured, and holds no secret
    expect(output.toLowerCase()).not.to.include(h.oracleKey.slice(2).toLowerCase());
    expect(output).not.to.include(password);
  });
});
