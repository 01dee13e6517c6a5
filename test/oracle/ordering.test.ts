/**
 * A machine's readings are checked side by side but claim its meter in arrival order: a newer
 * reading whose signature check finishes first still waits for the older one, so both are accepted
 * and the meter never goes backwards; and a reading older than one already claimed is refused as
 * stale before its signature is checked.
 */
import { expect } from "chai";
import { createOracle, type Oracle } from "../../services/oracle/service.ts";
import { createSignatureVerifier, type SignatureVerifier } from "../../services/oracle/verifier.ts";
import { bytesToHex, readingDigest } from "../../services/shared/eip712.ts";
import {
  MachineSide,
  readingMessage,
  startHarness,
  testOracleConfig,
  type Harness,
} from "./harness.ts";

describe("oracle claim order", () => {
  let h: Harness;
  let oracle: Oracle;
  let side: MachineSide;
  /** The meter of each reading digest this test publishes. */
  const meterOf = new Map<string, bigint>();
  /** Meters whose signatures were checked, in the order the checks were asked for. */
  const checked: bigint[] = [];
  /** Signature checks of these meters answer only after this many milliseconds. */
  const slow = new Map<bigint, number>();

  before(async () => {
    h = await startHarness();
    const inline = createSignatureVerifier(0);
    // The real check, answered late for some readings, as a busy verifier thread would answer.
    const verifier: SignatureVerifier = {
      async verify(digest, signature, key) {
        const meter = meterOf.get(bytesToHex(digest));
        if (meter !== undefined) checked.push(meter);
        const result = await inline.verify(digest, signature, key);
        const delay = meter === undefined ? undefined : slow.get(meter);
        if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
        return result;
      },
      close: () => inline.close(),
    };
    oracle = createOracle(testOracleConfig(h, { HEALTH_PORT: "-1", LOG_LEVEL: "warn" }), {
      verifier,
    });
    await oracle.start();
    side = await MachineSide.connect(oracle.brokerUrl, [h.k1], 4);
  });

  after(async () => {
    await side?.close();
    await oracle?.stop();
    await h?.stop();
  });

  function reading(units: bigint) {
    const message = readingMessage(h, h.k1, units);
    const digest = readingDigest(h.domain, {
      agreementId: h.k1.agreementId,
      machineId: h.k1.machineId,
      cumulativeUnits: units,
      timestamp: BigInt(message.timestamp),
    });
    meterOf.set(bytesToHex(digest), units);
    return message;
  }

  async function until(condition: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 400; i++) {
      if (condition()) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(oracle.stats)}`);
  }

  it("lets an older reading whose check is slow claim the meter before the newer one", async () => {
    slow.set(1_000n, 400);
    await side.publish(h.k1, reading(1_000n));
    await side.publish(h.k1, reading(2_000n));
    await until(() => oracle.stats.accepted === 2, "both readings accepted");
    expect(oracle.stats.rejected).to.deep.equal({});
    expect(checked).to.deep.equal([1_000n, 2_000n]);
    await side.waitFor(
      (s) => s.state === "settled" && s.cumulativeUnits === "2000",
      "settled at 2000",
    );
    expect((await h.agreement(h.k1.agreementId)).cumulativeUnits).to.equal(2_000n);
  });

  it("refuses a reading older than the claimed meter before checking its signature", async () => {
    await side.publish(h.k1, reading(1_500n));
    await side.waitFor(
      (s) => s.state === "rejected" && s.reason === "stale_reading" && s.cumulativeUnits === "1500",
      "stale 1500",
    );
    expect(checked).to.not.include(1_500n);
    expect(oracle.stats.accepted).to.equal(2);
  });
});
