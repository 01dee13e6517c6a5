/**
 * The `ppu` command line through its real entry point: help with examples, device keys, and a deployment
 * whose refusal by the contract is turned into a sentence.
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startDevChain, type DevChain } from "../../services/shared/devchain.ts";

const run = promisify(execFile);

async function ppu(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [
      "--import",
      "tsx",
      "scripts/ppu.ts",
      ...args,
    ]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("ppu command line", function () {
  let chain: DevChain;
  const dir = mkdtempSync(join(tmpdir(), "ppu-cli-"));

  before(async () => {
    chain = await startDevChain();
  });

  after(async () => {
    await chain?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("explains itself with examples", async () => {
    const { code, stdout } = await ppu("--help");
    expect(code).to.equal(0);
    expect(stdout)
      .to.match(/deploy/)
      .and.match(/device/)
      .and.match(/Example/);
    expect((await ppu("deploy", "--help")).stdout).to.match(/Example/);
  });

  it("creates a P-256 device key readable by its owner only, and prints its registration data", async () => {
    const file = join(dir, "device.pem");
    expect((await ppu("device", "keygen", "--curve", "p256", "--out", file)).code).to.equal(0);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    const { code, stdout } = await ppu("device", "info", "--key", file);
    expect(code).to.equal(0);
    expect(JSON.parse(stdout).publicKey.x).to.match(/^0x[0-9a-f]{64}$/);
  });

  it("deploys, and turns a contract refusal into a sentence", async () => {
    const [deployer, bank, oracle] = chain.accounts;
    const ok = await ppu(
      "deploy",
      "--rpc",
      chain.rpcUrl,
      "--key",
      deployer!.privateKey,
      "--bank",
      bank!.address,
      "--oracle",
      oracle!.address,
    );
    expect(ok.code, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(/0x[0-9a-fA-F]{40}/);
    const refused = await ppu(
      "deploy",
      "--rpc",
      chain.rpcUrl,
      "--key",
      deployer!.privateKey,
      "--bank",
      bank!.address,
      "--oracle",
      oracle!.address,
      "--threshold",
      "5",
    );
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(/invalid threshold \(5, 1\)/i);
  });
});
