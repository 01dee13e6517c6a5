/**
 * The oracle end to end against a real JSON-RPC node and a real broker: the embedded one always, and
 * Mosquitto when MQTT_TEST_URL is set. Publish → verify → journal → batch → on-chain charge → settled
 * status, for both key types and both trust modes; and every bad input refused with its reason code
 * while the service keeps serving good readings.
 */
import { expect } from "chai";
import { randomBytes } from "node:crypto";
import type { Hex } from "viem";
import { createOracle, type Oracle } from "../../services/oracle/service.ts";
import { SECP256K1_N } from "../../services/shared/signatures.ts";
import {
  MachineSide,
  readingMessage,
  startHarness,
  testOracleConfig,
  type Harness,
  type TestMachine,
} from "./harness.ts";

const brokers: { name: string; url?: string; protocolVersion: 4 | 5 }[] = [
  { name: "embedded broker", url: undefined, protocolVersion: 4 },
  { name: "Mosquitto", url: process.env.MQTT_TEST_URL, protocolVersion: 5 },
];

for (const broker of brokers) {
  describe(`oracle with the ${broker.name}`, function () {
    let h: Harness;
    let oracle: Oracle;
    let side: MachineSide;

    before(async function () {
      if (broker.name === "Mosquitto" && !broker.url) {
        console.log("    MQTT_TEST_URL is not set: skipping the tests against Mosquitto");
        this.skip();
      }
      h = await startHarness();
      oracle = createOracle(testOracleConfig(h, { MQTT_URL: broker.url, LOG_LEVEL: "warn" }));
      await oracle.start();
      side = await MachineSide.connect(
        oracle.brokerUrl,
        [h.k1, h.p256, h.attested, h.other],
        broker.protocolVersion,
      );
    });

    after(async () => {
      await side?.close();
      await oracle?.stop();
      await h?.stop();
    });

    const settledAt =
      (m: TestMachine, units: bigint) =>
      (s: { machineId: string; state: string; cumulativeUnits?: string }) =>
        s.machineId === m.machineId &&
        s.state === "settled" &&
        s.cumulativeUnits === units.toString();
    const rejected =
      (m: TestMachine, reason: string) =>
      (s: { machineId: string; state: string; reason?: string }) =>
        s.machineId === m.machineId && s.state === "rejected" && s.reason === reason;

    for (const which of ["k1", "p256", "attested"] as const) {
      it(`charges a ${which === "attested" ? "oracle-attested" : `${which} device-signed`} reading on-chain and reports it settled`, async () => {
        const m = h[which];
        await side.publish(m, readingMessage(h, m, 4_000n));
        const settled = await side.waitFor(settledAt(m, 4_000n), "settled 4000");
        expect(settled.txHash).to.match(/^0x[0-9a-f]{64}$/);
        const agreement = await h.agreement(m.agreementId);
        expect(agreement.cumulativeUnits).to.equal(4_000n);
        expect(agreement.totalCharged).to.equal(1_000_000n);
      });
    }

    it("settles only the newest of many readings taken offline, in one submission", async () => {
      const m = h.p256;
      const now = Math.floor(Date.now() / 1000) + h.clockOffset;
      for (let i = 1; i <= 50; i++)
        await side.publish(m, readingMessage(h, m, 4_000n + BigInt(i) * 100n, now));
      await side.waitFor(settledAt(m, 9_000n), "settled 9000");
      expect((await h.agreement(m.agreementId)).cumulativeUnits).to.equal(9_000n);
    });

    it("refuses each kind of bad input with its reason code and keeps serving", async () => {
      const m = h.k1;
      const good = readingMessage(h, m, 5_000n);
      await side.publish(m, "{not json");
      await side.waitFor(rejected(m, "malformed_json"), "malformed_json");
      await side.publish(m, { ...good, v: 2 });
      await side.waitFor(rejected(m, "unsupported_version"), "unsupported_version");
      await side.publish(m, { ...good, extra: "x".repeat(2_000) });
      await side.waitFor(rejected(m, "payload_too_large"), "payload_too_large");
      await side.publish(m, { ...good, cumulativeUnits: 5000 });
      await side.waitFor(rejected(m, "schema_invalid"), "schema_invalid");
      // A signature by another key.
      await side.publish(m, { ...good, signature: readingMessage(h, h.other, 5_000n).signature });
      await side.waitFor(rejected(m, "bad_signature"), "bad_signature");
      // The same signature mirrored to high s.
      const sig = good.signature.slice(2);
      const s = BigInt(`0x${sig.slice(64, 128)}`);
      const highS = (SECP256K1_N - s).toString(16).padStart(64, "0");
      const v = parseInt(sig.slice(128, 130), 16) === 27 ? "1c" : "1b";
      await side.publish(m, { ...good, signature: `0x${sig.slice(0, 64)}${highS}${v}` });
      await side.waitFor(rejected(m, "malleable_signature"), "malleable_signature");
      // A reading for another machine's agreement, signed by this machine.
      await side.publish(m, readingMessage(h, { ...m, agreementId: h.other.agreementId }, 5_000n));
      await side.waitFor(rejected(m, "agreement_machine_mismatch"), "agreement_machine_mismatch");
      await side.publish(m, readingMessage(h, { ...m, agreementId: 999_999n }, 5_000n));
      await side.waitFor(rejected(m, "unknown_agreement"), "unknown_agreement");
      await side.publish(
        m,
        readingMessage(h, m, 5_000n, Math.floor(Date.now() / 1000) + h.clockOffset + 3_600),
      );
      await side.waitFor(rejected(m, "future_timestamp"), "future_timestamp");
      // Faster than the declared 3,600,000 units per hour (1,000 per second).
      await side.publish(m, readingMessage(h, m, 10_000_000n));
      await side.waitFor(rejected(m, "rate_exceeded"), "rate_exceeded");
      // A good reading still goes through, then its replay and an older one are refused.
      await side.publish(m, good);
      await side.waitFor(settledAt(m, 5_000n), "settled 5000");
      await side.publish(m, good);
      await side.waitFor(rejected(m, "replay"), "replay");
      await side.publish(m, readingMessage(h, m, 4_500n));
      await side.waitFor(rejected(m, "stale_reading"), "stale_reading");
      // An unknown machine: its status topic says so.
      const ghost: TestMachine = {
        machineId: `0x${randomBytes(32).toString("hex")}` as Hex,
        agreementId: 1n,
        key: m.key,
      };
      await side.client.subscribeAsync(`ppu/v1/${ghost.machineId}/status`, { qos: 1 });
      await side.publish(ghost, readingMessage(h, ghost, 1n));
      await side.waitFor(rejected(ghost, "unknown_machine"), "unknown_machine");
      expect((await h.agreement(m.agreementId)).cumulativeUnits).to.equal(5_000n);
    });

    it("serves Prometheus metrics, liveness and readiness", async () => {
      const base = `http://127.0.0.1:${oracle.healthPort}`;
      expect((await fetch(`${base}/healthz`)).status).to.equal(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).to.equal(200);
      expect(await ready.json()).to.deep.equal({
        ready: true,
        checks: { broker: true, journal: true, chain: true },
      });
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).to.match(/^ppu_oracle_readings_accepted_total [1-9]\d*$/m);
      expect(metrics).to.match(
        /^ppu_oracle_readings_rejected_total\{reason="malformed_json"\} [1-9]/m,
      );
      expect(metrics).to.match(/^ppu_oracle_ack_seconds_count [1-9]/m);
    });

    it("refuses a revoked key's readings from the revocation on", async () => {
      const m = h.other;
      await side.publish(m, readingMessage(h, m, 1_000n));
      await side.waitFor(settledAt(m, 1_000n), "settled 1000");
      await h.write("revokeDeviceKey", [m.machineId]);
      // The oracle learns of the revocation from the contract's events.
      await new Promise((resolve) => setTimeout(resolve, 600));
      await side.publish(m, readingMessage(h, m, 2_000n));
      await side.waitFor(rejected(m, "key_revoked"), "key_revoked");
      expect((await h.agreement(m.agreementId)).cumulativeUnits).to.equal(1_000n);
    });
  });
}
