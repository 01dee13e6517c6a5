/**
 * The on-chain `ppu` commands through the real entry point against a real chain: a machine with a
 * device key made by `ppu device keygen`, a tariff, an agreement opened with a decimal deposit and
 * topped up, usage read back from the chain as a table and as CSV, settlement and a withdrawal of
 * earnings the token refused at settlement, closing; bad input refused before anything is sent and
 * a contract refusal told as a sentence.
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Command } from "commander";
import {
  createPublicClient,
  createWalletClient,
  erc20Abi,
  http,
  keccak256,
  parseEventLogs,
  stringToHex,
  type Abi,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { registerAgreementCommands } from "../../scripts/commands/agreement.ts";
import { registerMachineCommands } from "../../scripts/commands/machine.ts";
import { registerSettlementCommands } from "../../scripts/commands/settlement.ts";
import { registerTariffCommands } from "../../scripts/commands/tariff.ts";
import { registerUsageCommand } from "../../scripts/commands/usage.ts";
import { generateDeviceKey, loadDeviceKey, saveDeviceKey } from "../../services/device/keys.ts";
import { loadArtifact, payPerUseAbi } from "../../services/shared/artifacts.ts";
import { chainFor } from "../../services/shared/deployment.ts";
import { deploySuite, startDevChain, type DevChain } from "../../services/shared/devchain.ts";
import { signReading } from "../../services/shared/signatures.ts";

const ZERO32 = `0x${"00".repeat(32)}` as Hex;

const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

describe("ppu machine, tariff, agreement, usage, settle, withdraw", function () {
  let chain: DevChain;
  let client: PublicClient;
  let payPerUse: Address;
  let token: Address;
  let env: Record<string, string>;
  const dir = mkdtempSync(join(tmpdir(), "ppu-commands-"));
  const devicePem = join(dir, "press-1.pem");
  const ownerKeyFile = join(dir, "owner.key");
  const lesseeKeyFile = join(dir, "lessee.key");
  const pressId = keccak256(stringToHex("press-1"));
  let owner: Address;
  let lessee: Address;
  let deployerKey: Hex;
  let lesseeKey: Hex;
  let ownerKey: Hex;

  async function ppu(args: string[], extraEnv: Record<string, string> = {}): Promise<Result> {
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

  const words = (line: string) => line.trim().split(/\s+/);
  const asOwner = (line: string) => ppu(words(line), { PPU_KEY_FILE: ownerKeyFile });
  const asLessee = (line: string) => ppu(words(line), { PPU_KEY_FILE: lesseeKeyFile });

  /** The commands in this process, output captured, errors thrown instead of exiting. */
  let captured = "";
  function commands(): Command {
    const program = new Command().exitOverride();
    program.configureOutput({
      writeOut: (text) => (captured += text),
      writeErr: (text) => (captured += text),
    });
    registerMachineCommands(program);
    registerTariffCommands(program);
    registerAgreementCommands(program);
    registerSettlementCommands(program);
    registerUsageCommand(program);
    return program;
  }

  function ok(result: Result): string {
    expect(result.code, `${result.stderr}\n${result.stdout}`).to.equal(0);
    return result.stdout;
  }

  async function sendAs(
    key: Hex,
    address: Address,
    abi: Abi,
    functionName: string,
    args: unknown[],
  ) {
    const wallet = createWalletClient({
      account: privateKeyToAccount(key),
      chain: await chainFor(chain.rpcUrl),
      transport: http(chain.rpcUrl),
    });
    const hash = await wallet.writeContract({ address, abi, functionName, args } as never);
    const receipt = await client.waitForTransactionReceipt({ hash });
    expect(receipt.status).to.equal("success");
    return receipt;
  }

  /** Records a device-signed reading directly, as a relaying oracle would. */
  async function record(agreementId: bigint, cumulativeUnits: bigint): Promise<void> {
    const block = await client.getBlock();
    const reading = {
      agreementId,
      machineId: pressId,
      cumulativeUnits,
      timestamp: block.timestamp,
    };
    const signature = signReading(
      { chainId: chain.chainId, verifyingContract: payPerUse },
      reading,
      loadDeviceKey(devicePem),
    );
    const receipt = await sendAs(deployerKey, payPerUse, payPerUseAbi(), "record", [
      [{ reading, signature }],
    ]);
    const charged = parseEventLogs({
      abi: payPerUseAbi(),
      logs: receipt.logs,
      eventName: "UsageRecorded",
    });
    expect(charged, "the reading was charged").to.have.length(1);
  }

  const balanceOf = (account: Address) =>
    client.readContract({
      address: token,
      abi: erc20Abi,
      functionName: "balanceOf",
      args: [account],
    });

  before(async function () {
    chain = await startDevChain();
    client = createPublicClient({
      chain: await chainFor(chain.rpcUrl),
      transport: http(chain.rpcUrl),
    }) as PublicClient;
    const [deployer, bank, ownerAccount, lesseeAccount, oracle] = chain.accounts;
    deployerKey = deployer!.privateKey;
    lesseeKey = lesseeAccount!.privateKey;
    owner = ownerAccount!.address;
    ownerKey = ownerAccount!.privateKey;
    lessee = lesseeAccount!.address;

    // A 6-decimal token that can refuse transfers to an address, as USDC and EURC can.
    const blocklist = loadArtifact("MockBlocklistToken");
    const wallet = createWalletClient({
      account: privateKeyToAccount(deployerKey),
      chain: await chainFor(chain.rpcUrl),
      transport: http(chain.rpcUrl),
    });
    const hash = await wallet.deployContract({
      abi: blocklist.abi,
      bytecode: blocklist.bytecode,
      args: [deployer!.address],
    } as never);
    token = (await client.waitForTransactionReceipt({ hash })).contractAddress!;
    ({ payPerUse } = await deploySuite({
      rpcUrl: chain.rpcUrl,
      deployerKey,
      bank: bank!.address,
      oracleSigners: [oracle!.address],
      threshold: 1,
      token,
    }));
    await sendAs(deployerKey, token, blocklist.abi, "mint", [lessee, 1_000_000_000n]);

    writeFileSync(ownerKeyFile, `${ownerAccount!.privateKey}\n`, { mode: 0o600 });
    writeFileSync(lesseeKeyFile, `${lesseeKey}\n`, { mode: 0o600 });
    env = { RPC_URL: chain.rpcUrl, CONTRACT_ADDRESS: payPerUse };
    ok(await ppu(["device", "keygen", "--curve", "p256", "--out", devicePem]));
  });

  after(async () => {
    await chain?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("shows an example in the help of every command", async () => {
    const program = commands();
    const leaves = program.commands.flatMap((c) => (c.commands.length > 0 ? c.commands : [c]));
    expect(leaves.map((c) => c.name())).to.include.members(
      words(
        "register rotate-key revoke-key transfer show publish open top-up close settle withdraw usage",
      ),
    );
    for (const command of leaves) {
      captured = "";
      command.outputHelp();
      expect(captured, command.name())
        .to.match(/Example/)
        .and.match(/\$ (PPU_KEY_FILE=\S+ )?ppu /);
    }
  });

  it("refuses bad input before sending anything, and never prints a key", async () => {
    const head = await client.getBlockNumber();
    const chainFlags = `--rpc ${chain.rpcUrl} --contract ${payPerUse}`;
    const refusal = async (line: string) => {
      const error = await commands()
        .parseAsync(words(line), { from: "user" })
        .then(
          () => undefined,
          (e: Error) => e,
        );
      expect(error, line).to.be.instanceOf(Error);
      return error!.message;
    };
    expect(
      await refusal(`machine register --id press-1 --device-key ${devicePem} --payout 0x1234`),
    ).to.match(/--payout <address>.*'0x1234' is invalid\. not an address/);
    expect(await refusal("agreement top-up --id seven --amount 1")).to.match(
      /--id <n>.*'seven' is invalid\. not a number/,
    );
    expect(
      await refusal(
        "agreement open --machine press-1 --tariff-version 1 --deposit 25,50 --days 30",
      ),
    ).to.match(/--deposit <amount>.*'25,50' is invalid\. not an amount/);
    expect(
      await refusal(
        `tariff publish --machine 0x12 --unit kWh --price 1 --unit-scale 1 --token ${payPerUse}`,
      ),
    ).to.match(/--machine <bytes32\|name>.*not 32 bytes of hex/);
    expect(await refusal(`settle --agreements 1 ${chainFlags}`)).to.match(
      /needs the account's key: --key-file FILE or PPU_KEY_FILE/,
    );

    // Through the entry point: stderr carries the reason, and no key appears anywhere.
    const secret = `0x${"5e".repeat(32)}`;
    const [unknown, badKey] = await Promise.all([
      ppu(words(`machine transfer --id no-such-machine --to ${owner} --key ${secret}`)),
      ppu(words("machine revoke-key --id press-1"), { PPU_KEY: `${secret}zz` }),
    ]);
    for (const r of [unknown, badKey]) {
      expect(r.code, r.stdout).to.equal(1);
      expect(r.stdout + r.stderr).not.to.include(secret.slice(2));
    }
    expect(unknown.stderr).to.include(
      `No machine is registered with id ${keccak256(stringToHex("no-such-machine"))}.`,
    );
    expect(badKey.stderr).to.match(
      /account key \(--key or PPU_KEY\) is not a 32-byte hex private key/,
    );
    expect(await client.getBlockNumber(), "nothing was sent").to.equal(head);
  });

  it("registers a machine with a device key from ppu device keygen and shows it", async () => {
    const registered = ok(
      await asOwner(
        `machine register --id press-1 --device-key ${devicePem} --payout ${owner} --max-units-per-hour 1000000`,
      ),
    );
    expect(registered).to.match(/^registerMachine: block \d+, tx 0x[0-9a-f]{64}, gas \d+$/m);
    expect(registered).to.include(`registered machine ${pressId}`);
    expect(registered).to.match(/device-signed, P-256 key x=0x[0-9a-f]{64}/);

    const [again, shown] = await Promise.all([
      asOwner(`machine register --id ${pressId} --attested --payout ${owner}`),
      ppu(words("machine show --id press-1")),
    ]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.include(`Machine ${pressId} is already registered, owned by ${owner}.`);
    expect(ok(shown)).to.include(`owner              ${owner}`);
    expect(shown.stdout)
      .to.match(/trust mode +DeviceSigned/)
      .and.match(/device key +P256, version 1/)
      .and.match(/max units per hour 1000000/);
  });

  it("rotates, revokes and transfers a machine", async () => {
    const k1 = join(dir, "line-2.key");
    saveDeviceKey(k1, generateDeviceKey("secp256k1"));
    // Registered directly: the command was shown above.
    await sendAs(ownerKey, payPerUse, payPerUseAbi(), "registerMachine", [
      keccak256(stringToHex("line-2")),
      owner,
      1,
      0n,
      { keyType: 0, x: ZERO32, y: ZERO32 },
    ]);
    expect(ok(await asOwner(`machine rotate-key --id line-2 --device-key ${k1}`))).to.match(
      /rotated the device key of machine 0x[0-9a-f]{64}: version 2, secp256k1 key of address 0x/,
    );
    expect(ok(await asOwner("machine revoke-key --id line-2"))).to.match(
      /revoked device key version 2 of machine/,
    );
    expect(ok(await asOwner(`machine transfer --id line-2 --to ${lessee}`))).to.include(
      `to ${lessee}`,
    );
    const [shown, refused] = await Promise.all([
      ppu(words("machine show --id line-2 --json")),
      asOwner("machine revoke-key --id line-2"),
    ]);
    expect(JSON.parse(ok(shown))).to.include({
      owner: lessee,
      payout: owner,
      trustMode: "OracleAttested",
      keyType: "None",
    });
    // The former owner is refused by the contract, in a sentence.
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(
      /^The contract refused the call: not machine owner \(0x[0-9a-f]{64}, 0x[0-9a-fA-F]{40}\)\.$/m,
    );
  });

  it("publishes a tariff, opens an agreement with a decimal deposit and tops it up", async () => {
    const published = ok(
      await asOwner(
        `tariff publish --machine press-1 --unit kWh --price 0.25 --unit-scale 1000 --tier 100000:0.20 --token ${token}`,
      ),
    );
    expect(published).to.match(/published tariff version 1 of machine/);
    expect(published).to.include("0.25 BLK (250000 units) per 1000 units (kWh)");

    const [tariff, unknownTariff] = await Promise.all([
      ppu(words("tariff show --machine press-1 --version 1")),
      asLessee("agreement open --machine press-1 --tariff-version 9 --deposit 1 --days 1"),
    ]);
    expect(ok(tariff)).to.match(/price +0\.25 BLK \(250000 units\) per 1000 units/);
    expect(tariff.stdout).to.match(/from 100000 units: 0\.20 BLK \(200000 units\)/);
    expect(unknownTariff.code).to.equal(1);
    expect(unknownTariff.stderr).to.equal(
      `The contract refused the call: unknown tariff (${pressId}, 9).\n`,
    );

    const opened = ok(
      await asLessee(
        "agreement open --machine press-1 --tariff-version 1 --deposit 25.50 --days 30",
      ),
    );
    expect(opened)
      .to.match(/^approve: block \d+/m)
      .and.match(/^openAgreement: block \d+/m);
    expect(opened).to.match(/opened agreement 1 for machine/);
    expect(opened).to.include("deposit 25.50 BLK (25500000 units) in escrow");

    const topUp = ok(await asLessee("agreement top-up --id 1 --amount 4500000"));
    expect(topUp).to.include("topped up agreement 1 with 4.50 BLK (4500000 units)");
    expect(topUp).to.include("escrow now 30.00 BLK (30000000 units)");
  });

  it("shows the agreement and lists its usage from the chain as a table and as CSV", async () => {
    await record(1n, 4000n); // 4 kWh at 0.25
    const [shown, table, csv] = await Promise.all([
      ppu(words("agreement show --id 1")),
      ppu(words("usage --agreement 1")),
      ppu(words("usage --agreement 1 --from 0 --chunk 3 --csv")),
    ]);
    expect(ok(shown))
      .to.match(/agreement 1: Active/)
      .and.include(`lessee           ${lessee}`);
    expect(shown.stdout).to.match(/escrow +29\.00 BLK \(29000000 units\)/);
    expect(shown.stdout).to.match(/total charged +1\.00 BLK \(1000000 units\)/);
    expect(shown.stdout).to.match(/metered units +4000, last reading \d{4}-/);
    expect(shown.stdout).to.match(/dispute window +1 d: may close after/);
    const lines = ok(table).trim().split("\n");
    expect(lines[0]).to.match(
      /^time +block +cumulative units +units +charge BLK +escrow BLK +debt BLK +tx$/,
    );
    expect(lines[1]).to.match(
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z +\d+ +4000 +4000 +1\.00 +29\.00 +0\.00 +0x[0-9a-f]{64}$/,
    );
    expect(lines[2]).to.match(
      /^1 reading\(s\) in blocks \d+–\d+: 4000 units, charged 1\.00 BLK \(1000000 units\)$/,
    );
    expect(table.stderr).to.match(/… blocks \d+–\d+ of \d+–\d+: 1 reading\(s\) so far/);

    const rows = ok(csv).trim().split("\n");
    expect(rows[0]).to.equal(
      "time,block,cumulative_units,units,charge,escrow,debt,charge_units,escrow_units,debt_units,tx",
    );
    expect(rows[1]).to.match(
      /^\d{4}-[^,]+Z,\d+,4000,4000,1\.00,29\.00,0\.00,1000000,29000000,0,0x[0-9a-f]{64}$/,
    );
    expect(rows).to.have.length(2);
    expect(csv.stderr.match(/… blocks/g)!.length, "read in chunks of 3 blocks").to.be.greaterThan(
      3,
    );
  });

  it("settles to the payout, and withdraws what the token refused at settlement", async () => {
    const settled = ok(await asLessee("settle --agreements 1"));
    expect(settled).to.include(`paid 1.00 BLK (1000000 units) to ${owner}`);
    expect(await balanceOf(owner)).to.equal(1_000_000n);

    await record(1n, 8000n);
    const blocklist = loadArtifact("MockBlocklistToken").abi;
    await sendAs(deployerKey, token, blocklist, "setBlocked", [owner, true]);
    const failed = ok(await asLessee("settle --agreements 1"));
    expect(failed).to.include(
      `payout of 1.00 BLK (1000000 units) to ${owner} failed: it stays credited`,
    );
    await sendAs(deployerKey, token, blocklist, "setBlocked", [owner, false]);

    const withdrawn = ok(await asOwner(`withdraw --token ${token}`));
    expect(withdrawn).to.include(`withdrew 1.00 BLK (1000000 units) to ${owner}`);
    expect(withdrawn).to.include("balance now 2.00 BLK (2000000 units)");
    expect(await balanceOf(owner)).to.equal(2_000_000n);
  });

  it("ends, then closes an agreement and refunds the escrow; a closed agreement takes no top-up", async () => {
    const ended = ok(await asLessee("agreement close --id 1"));
    expect(ended).to.match(/ended agreement 1 at .*\n.*close it after that/);
    await chain.provider.request({ method: "evm_increaseTime", params: [86_401] });
    await chain.provider.request({ method: "evm_mine", params: [] });
    const before = await balanceOf(lessee);
    const closed = ok(await asLessee("agreement close --id 1"));
    expect(closed).to.include(`refunded to the lessee ${lessee}: 28.00 BLK (28000000 units)`);
    expect(closed).to.include("total charged 2.00 BLK (2000000 units)");
    expect((await balanceOf(lessee)) - before).to.equal(28_000_000n);

    const [late, shown] = await Promise.all([
      asLessee("agreement top-up --id 1 --amount 1.00"),
      ppu(words("agreement show --id 1 --json")),
    ]);
    expect(JSON.parse(ok(shown))).to.include({ status: "Closed", escrow: "0" });
    expect(late.code).to.equal(1);
    expect(late.stderr).to.include("Agreement 1 is closed; it takes no more top-ups.");
  });
});
