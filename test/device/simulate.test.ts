/**
 * The fleet simulator: a small embedded fleet (both key types, scripted outages with restarts
 * from buffer files) is charged on-chain exactly what it measured, checked here against the chain
 * directly; and the command line, run against a chain and a broker where no oracle listens, reports
 * the difference and exits non-zero.
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createPublicClient, http, parseEventLogs } from "viem";
import { startEmbeddedBroker } from "../../services/oracle/embedded-broker.ts";
import { payPerUseAbi } from "../../services/shared/artifacts.ts";
import { deploySuite, startDevChain } from "../../services/shared/devchain.ts";
import {
  findMismatches,
  formatSummary,
  parseOfflinePeriod,
  seededRandom,
  simulate,
  type MachineResult,
  type SimulateResult,
} from "../../services/device/simulate.ts";

const run = promisify(execFile);

async function ppu(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ["--import", "tsx", "scripts/ppu.ts", ...args],
      { timeout: 60_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("ppu device simulate", function () {
  it("runs an embedded fleet of 20 and the chain charges exactly the measured usage", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ppu-sim-"));
    const progress: string[] = [];
    const onChain = new Map<bigint, { units: bigint; charged: bigint; records: number }>();
    let result: SimulateResult;
    try {
      result = await simulate({
        embedded: true,
        machines: 20,
        seconds: 10,
        rate: 15,
        seed: 42,
        publishIntervalMs: 1000,
        offline: ["0:1-6", "1:2-8", "7:0-9"].map(parseOfflinePeriod),
        bufferDir: dir,
        settleTimeoutS: 60,
        onProgress: (line) => progress.push(line),
        // Read the chain independently of the simulator's own comparison, before it stops.
        async beforeStop(system) {
          const client = createPublicClient({ transport: http(system.rpcUrl) });
          const abi = payPerUseAbi();
          const usage = parseEventLogs({
            abi,
            eventName: "UsageRecorded",
            logs: await client.getLogs({ address: system.payPerUse, fromBlock: 0n }),
          }) as unknown as { args: { agreementId: bigint } }[];
          for (const m of system.machines) {
            const a = (await client.readContract({
              address: system.payPerUse,
              abi,
              functionName: "getAgreement",
              args: [m.agreementId],
            })) as { cumulativeUnits: bigint; totalCharged: bigint };
            onChain.set(m.agreementId, {
              units: a.cumulativeUnits,
              charged: a.totalCharged,
              records: usage.filter((e) => e.args.agreementId === m.agreementId).length,
            });
          }
        },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    expect(result.ok, formatSummary(result)).to.equal(true);
    expect(result.mismatches).to.have.length(0);
    expect(result.unconfirmed).to.equal(0);
    expect(result.machines.filter((m) => m.keyType === "p256")).to.have.length(10);
    expect(result.machines.filter((m) => m.keyType === "secp256k1")).to.have.length(10);
    for (const m of result.machines) {
      const chain = onChain.get(m.agreementId)!;
      expect(m.measured, `machine ${m.index} measured`).to.be.greaterThan(0n);
      expect(chain.units, `machine ${m.index} on-chain meter`).to.equal(m.measured);
      // The simulator's tariff: 250,000 per 1,000 units.
      expect(chain.charged, `machine ${m.index} charge`).to.equal((m.measured * 250_000n) / 1_000n);
      expect(chain.records).to.be.greaterThan(0);
    }
    // The scripted outages happened, and each ended with a restart from the buffer file.
    for (const index of [0, 1, 7]) {
      expect(result.machines[index]!.offline).to.have.length(1);
      expect(result.machines[index]!.restarts, `machine ${index} restarts`).to.equal(1);
    }
    expect(result.machines[3]!.restarts).to.equal(0);
    const total = result.machines.reduce((sum, m) => sum + m.measured, 0n);
    expect(result.totals.measured).to.equal(total);
    expect(result.totals.chainUnits).to.equal(total);
    expect(formatSummary(result))
      .to.match(/mismatches\s+0\n/)
      .and.match(/OK:/);
    expect(progress.some((line) => /metering for 10 s/.test(line))).to.equal(true);
  });

  it("counts a machine whose meter or charge differs from the chain as a mismatch", () => {
    const machine: MachineResult = {
      index: 0,
      keyType: "p256",
      machineId: `0x${"11".repeat(32)}`,
      agreementId: 1n,
      rate: 1,
      offline: [],
      restarts: 0,
      measured: 100n,
      confirmed: 100n,
      chainUnits: 100n,
      charged: 25_000n,
      expectedCharge: 25_000n,
      state: "serving",
    };
    expect(findMismatches([machine])).to.have.length(0);
    expect(findMismatches([{ ...machine, chainUnits: 99n }])).to.have.length(1);
    expect(findMismatches([{ ...machine, charged: 25_001n }])).to.have.length(1);
    expect(() => parseOfflinePeriod("3:10")).to.throw(/MACHINE:FROM-TO/);
    expect(() => parseOfflinePeriod("3:10-5")).to.throw(/ends before/);
    const a = seededRandom(9);
    const b = seededRandom(9);
    expect([a(), a(), a()]).to.deep.equal([b(), b(), b()]);
  });

  it("explains itself with examples", async () => {
    const { code, stdout } = await ppu("device", "simulate", "--help");
    expect(code).to.equal(0);
    expect(stdout)
      .to.match(/--embedded/)
      .and.match(/--offline <MACHINE:FROM-TO>/)
      .and.match(/Examples:/)
      .and.match(/Exit status/);
  });

  it("exits non-zero with the differences when the chain does not charge what was measured", async () => {
    // A chain, the contracts and a broker, but no oracle: nothing measured reaches the chain.
    const chain = await startDevChain({ wallClockBlocks: true });
    const broker = await startEmbeddedBroker();
    try {
      const [deployer, bank, owner, lessee, oracleSigner] = chain.accounts;
      const deployment = await deploySuite({
        rpcUrl: chain.rpcUrl,
        deployerKey: deployer!.privateKey,
        bank: bank!.address,
        oracleSigners: [oracleSigner!.address],
        threshold: 1,
      });
      const out = await ppu(
        "device",
        "simulate",
        "--rpc",
        chain.rpcUrl,
        "--contract",
        deployment.payPerUse,
        "--token",
        deployment.token,
        "--broker",
        broker.url,
        "--mqtt-version",
        "4",
        "--owner-key",
        owner!.privateKey,
        "--lessee-key",
        lessee!.privateKey,
        "--mint-key",
        deployer!.privateKey,
        "--machines",
        "2",
        "--seconds",
        "2",
        "--settle-timeout",
        "1",
      );
      expect(out.code, out.stderr).to.equal(1);
      expect(out.stdout)
        .to.match(/mismatches\s+2\n/)
        .and.match(/MISMATCH/);
      expect(out.stderr).to.match(/machines registered 2\/2/);
    } finally {
      await broker.stop();
      await chain.stop();
    }
  });
});
