/**
 * A generated corpus of 1,200 malformed and hostile messages: none may be charged, every one is
 * answered with a reason code, and good readings sent in between are still served.
 */
import { expect } from "chai";
import { randomBytes } from "node:crypto";

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

/** A deterministic generator, so a failure can be replayed. */
function rng(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function hostileMessages(
  h: Harness,
  count: number,
): { machine: TestMachine; payload: string | Buffer }[] {
  const random = rng(20261124);
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
  const m = h.k1;
  const base = () => readingMessage(h, m, 1n + BigInt(Math.floor(random() * 900)));
  const mutations: (() => string | Buffer)[] = [
    () => randomBytes(1 + Math.floor(random() * 200)),
    () => JSON.stringify(base()).slice(0, Math.floor(random() * 60)),
    () => JSON.stringify([base()]),
    () => JSON.stringify({ ...base(), v: pick([0, 2, "1", null, 1.5]) }),
    () =>
      JSON.stringify({
        ...base(),
        agreementId: pick([-1, "1e3", "0x10", "", "9".repeat(90), null]),
      }),
    () =>
      JSON.stringify({
        ...base(),
        cumulativeUnits: pick([1, "-5", "1.5", "99999999999999999999999999999999", {}]),
      }),
    () => JSON.stringify({ ...base(), timestamp: pick(["now", -1, 2 ** 41, 1.5]) }),
    () => JSON.stringify({ ...base(), machineId: `0x${randomBytes(31).toString("hex")}` }),
    () => JSON.stringify({ ...base(), machineId: h.other.machineId }),
    () => JSON.stringify({ ...base(), signature: `0x${randomBytes(65).toString("hex")}` }),
    () => JSON.stringify({ ...base(), signature: `0x30${randomBytes(69).toString("hex")}` }),
    () => JSON.stringify({ ...base(), signature: "0xzz" }),
    () => JSON.stringify({ ...base(), extra: true }),
    () => JSON.stringify({ ...base(), padding: "x".repeat(1_100) }),
    () => JSON.stringify(readingMessage(h, { ...m, agreementId: h.other.agreementId }, 500n)),
    () =>
      JSON.stringify(
        readingMessage(h, m, 500n, Math.floor(Date.now() / 1000) + h.clockOffset + 86_400),
      ),
    () => JSON.stringify(readingMessage(h, m, 10n ** 20n)),
    () => {
      const good = base();
      const sig = good.signature.slice(2);
      const highS = (SECP256K1_N - BigInt(`0x${sig.slice(64, 128)}`))
        .toString(16)
        .padStart(64, "0");
      return JSON.stringify({
        ...good,
        signature: `0x${sig.slice(0, 64)}${highS}${sig.slice(128)}`,
      });
    },
    () => JSON.stringify({ ...base(), signature: readingMessage(h, h.other, 5n).signature }),
  ];
  return Array.from({ length: count }, () => ({ machine: m, payload: pick(mutations)() }));
}

describe("oracle under a corpus of hostile messages", function () {
  let h: Harness;
  let oracle: Oracle;
  let side: MachineSide;

  before(async () => {
    h = await startHarness();
    oracle = createOracle(testOracleConfig(h));
    await oracle.start();
    side = await MachineSide.connect(oracle.brokerUrl, [h.k1, h.p256], 4);
  });

  after(async () => {
    await side?.close();
    await oracle?.stop();
    await h?.stop();
  });

  it("charges none of 1,200 hostile messages, answers each, and still serves good readings", async () => {
    const corpus = hostileMessages(h, 1_200);
    let good = 0n;
    for (let i = 0; i < corpus.length; i++) {
      await side.publish(corpus[i]!.machine, corpus[i]!.payload);
      if (i % 300 === 299) {
        good += 1_000n;
        await side.publish(h.p256, readingMessage(h, h.p256, good));
      }
    }
    await side.waitFor(
      (s) =>
        s.machineId === h.p256.machineId &&
        s.state === "settled" &&
        s.cumulativeUnits === good.toString(),
      `settled ${good}`,
      30_000,
    );
    const deadline = Date.now() + 30_000;
    while (oracle.stats.received < corpus.length + 4 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(oracle.stats.received).to.equal(corpus.length + 4);
    const refused = Object.values(oracle.stats.rejected).reduce((a, b) => a + b, 0);
    expect(refused, JSON.stringify(oracle.stats.rejected)).to.equal(corpus.length);
    expect(oracle.stats.accepted).to.equal(4);
    expect((await h.agreement(h.k1.agreementId)).totalCharged).to.equal(0n);
    expect((await h.agreement(h.p256.agreementId)).cumulativeUnits).to.equal(good);
    // The reasons cover the kinds of attack in the corpus.
    for (const reason of [
      "malformed_json",
      "unsupported_version",
      "schema_invalid",
      "payload_too_large",
      "topic_mismatch",
      "bad_signature",
      "malleable_signature",
      "agreement_machine_mismatch",
      "future_timestamp",
    ]) {
      expect(oracle.stats.rejected[reason] ?? 0, reason).to.be.greaterThan(0);
    }
  });
});
