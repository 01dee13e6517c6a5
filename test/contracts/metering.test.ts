/**
 * Metering: device-signed readings (secp256k1 and P-256) and oracle-attested k-of-n batches,
 * the charge as cost(new) - cost(previous) under the pinned tariff, volume tiers, spending
 * cap per period, low-balance warning, debt when the escrow runs dry, every skip reason (a bad
 * reading never reverts the batch), key rotation and revocation, and offline catch-up.
 */
import { expect } from "chai";
import { anyValue } from "@nomicfoundation/hardhat-ethers-chai-matchers/withArgs";
import {
  AgreementStatus,
  attest,
  DAY,
  deviceKeyOf,
  digestOf,
  ethers,
  HOUR,
  loadDeployment,
  networkHelpers,
  now,
  ONE,
  openAgreement,
  p256Key,
  PRICE,
  reading,
  secpKey,
  signed,
  SkipReason,
  tariff,
  UNIT_SCALE,
} from "./fixtures.ts";
import type { Hex } from "viem";
import { bytesToHex, readingBatchDigest, readingDigest } from "../../services/shared/eip712.ts";
import { SECP256K1_N } from "../../services/shared/signatures.ts";

/** cost(u) for the default tariff: 0.25 token per kWh, metered in Wh. */
const cost = (units: bigint) => (units * PRICE) / UNIT_SCALE;

describe("PayPerUse: metering", function () {
  describe("device-signed readings", () => {
    it("charges a secp256k1 reading: escrow moves to the owner's earnings, no token moves", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine, deposit: 10n * ONE });
      const at = await now();
      const tx = f.ppu.connect(f.stranger).getFunction("record")([
        signed(f, reading(id, f.k1Machine, 1_234n, at), f.k1Key),
      ]);
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 1_234n, 1_234n, cost(1_234n), 10n * ONE - cost(1_234n), 0n, at);
      await expect(tx).to.changeTokenBalances(ethers, f.eurc, [f.ppu, f.payout], [0n, 0n]);
      const agreement = await f.ppu.getAgreement(id);
      expect(agreement.cumulativeUnits).to.equal(1_234n);
      expect(agreement.totalCharged).to.equal(cost(1_234n));
      expect(agreement.lastReadingAt).to.equal(at);
      expect(await f.ppu.unsettledEarnings(id)).to.equal(cost(1_234n));
    });

    it("charges cost(new) - cost(previous), so rounding never drifts", async () => {
      const f = await loadDeployment();
      await f.ppu.connect(f.owner).getFunction("publishTariff")(
        f.k1Machine,
        tariff({ token: await f.eurc.getAddress(), price: 1n, unitScale: 3n }),
      );
      const id = await openAgreement(f, { machineId: f.k1Machine, tariffVersion: 2 });
      const at = await now();
      // One unit costs 1/3 of a smallest unit: three readings of one unit charge 0, 0, 1.
      const charges: bigint[] = [];
      for (const units of [1n, 2n, 3n]) {
        const receipt = await (
          await f.ppu.getFunction("record")([
            signed(f, reading(id, f.k1Machine, units, at), f.k1Key),
          ])
        ).wait();
        const log = receipt!.logs
          .map((l: any) => f.ppu.interface.parseLog(l))
          .find((l: any) => l?.name === "UsageRecorded");
        charges.push(log!.args.charge as bigint);
      }
      expect(charges).to.deep.equal([0n, 0n, 1n]);
      expect((await f.ppu.getAgreement(id)).totalCharged).to.equal(1n);
    });

    it("charges a P-256 reading signed with a key made by Node's crypto", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.p256Machine });
      const at = await now();
      await expect(
        f.ppu.getFunction("record")([
          signed(f, reading(id, f.p256Machine, 10_000n, at), f.p256Key),
        ]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(
          id,
          f.p256Machine,
          10_000n,
          10_000n,
          cost(10_000n),
          100n * ONE - cost(10_000n),
          0n,
          at,
        );
    });

    it("records many agreements of both key types in one batch", async () => {
      const f = await loadDeployment();
      const a = await openAgreement(f, { machineId: f.k1Machine });
      const b = await openAgreement(f, { machineId: f.p256Machine }, f.lessee2);
      const at = await now();
      const tx = f.ppu.getFunction("record")([
        signed(f, reading(a, f.k1Machine, 100n, at), f.k1Key),
        signed(f, reading(b, f.p256Machine, 200n, at), f.p256Key),
      ]);
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(a, f.k1Machine, 100n, 100n, cost(100n), anyValue, 0n, at);
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(b, f.p256Machine, 200n, 200n, cost(200n), anyValue, 0n, at);
    });
  });

  describe("oracle-attested readings", () => {
    it("accepts a batch signed by k = 2 of 3 signers in ascending address order", async () => {
      const f = await loadDeployment();
      const a = await openAgreement(f, { machineId: f.oracleMachine });
      const b = await openAgreement(f, { machineId: f.oracleMachine }, f.lessee2);
      const at = await now();
      const readings = [
        reading(a, f.oracleMachine, 500n, at),
        reading(b, f.oracleMachine, 700n, at),
      ];
      const tx = f.ppu.getFunction("recordAttested")(readings, attest(f, readings));
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(a, f.oracleMachine, 500n, 500n, cost(500n), anyValue, 0n, at);
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(b, f.oracleMachine, 700n, 700n, cost(700n), anyValue, 0n, at);
    });

    it("after the admin replaces the signer set, the old signers' attestations are refused", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.oracleMachine });
      const fresh = [secpKey("oracle-d"), secpKey("oracle-e")];
      await f.ppu.connect(f.admin).getFunction("setOracleSigners")(
        fresh.map((key) => ethers.computeAddress(key.privateKey)),
        2,
      );
      const readings = [reading(id, f.oracleMachine, 5n, await now())];
      await expect(
        f.ppu.getFunction("recordAttested")(readings, attest(f, readings)),
      ).to.be.revertedWithCustomError(f.ppu, "PayPerUse_InvalidAttestation");
      await expect(f.ppu.getFunction("recordAttested")(readings, attest(f, readings, fresh)))
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.oracleMachine, 5n, 5n, anyValue, anyValue, 0n, readings[0]!.timestamp);
    });

    it("accepts any k of the n signers, and all n", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.oracleMachine });
      const at = await now();
      const first = [reading(id, f.oracleMachine, 1n, at)];
      await expect(
        f.ppu.getFunction("recordAttested")(
          first,
          attest(f, first, [f.oracleKeys[1]!, f.oracleKeys[2]!]),
        ),
      ).to.emit(f.ppu, "UsageRecorded");
      const second = [reading(id, f.oracleMachine, 2n, at)];
      await expect(
        f.ppu.getFunction("recordAttested")(second, attest(f, second, f.oracleKeys)),
      ).to.emit(f.ppu, "UsageRecorded");
    });

    it("a device-signed machine's reading in an attested batch is skipped (WrongTrustMode), and vice versa", async () => {
      const f = await loadDeployment();
      const dev = await openAgreement(f, { machineId: f.k1Machine });
      const orc = await openAgreement(f, { machineId: f.oracleMachine });
      const at = await now();
      const readings = [reading(dev, f.k1Machine, 5n, at), reading(orc, f.oracleMachine, 5n, at)];
      const tx = f.ppu.getFunction("recordAttested")(readings, attest(f, readings));
      await expect(tx)
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(dev, f.k1Machine, SkipReason.WrongTrustMode, 5n);
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(orc, f.oracleMachine, 5n, 5n, anyValue, anyValue, 0n, at);
      // An oracle-attested machine's reading relayed through record() with any signature.
      const relayed = signed(f, reading(orc, f.oracleMachine, 9n, at), secpKey("nobody"));
      await expect(f.ppu.getFunction("record")([relayed]))
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(orc, f.oracleMachine, SkipReason.WrongTrustMode, 9n);
    });
  });

  describe("tariff features", () => {
    it("prices volume tiers on the cumulative meter across readings", async () => {
      const f = await loadDeployment();
      const tiers = [
        { fromUnits: 1_000n, price: 80n },
        { fromUnits: 5_000n, price: 50n },
      ];
      await f.ppu.connect(f.owner).getFunction("publishTariff")(
        f.k1Machine,
        tariff({ token: await f.eurc.getAddress(), price: 100n, unitScale: 1n, tiers }),
      );
      const id = await openAgreement(f, { machineId: f.k1Machine, tariffVersion: 2 });
      const at = await now();
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 1_500n, at), f.k1Key)]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 1_500n, 1_500n, 140_000n, anyValue, 0n, at);
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 6_000n, at), f.k1Key)]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 6_000n, 4_500n, 470_000n - 140_000n, anyValue, 0n, at);
    });

    it("publishing a new tariff version never changes a running agreement", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      await f.ppu.connect(f.owner).getFunction("publishTariff")(
        f.k1Machine,
        tariff({ token: await f.eurc.getAddress(), price: 10n * PRICE }),
      );
      const at = await now();
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 1_000n, at), f.k1Key)]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 1_000n, 1_000n, cost(1_000n), anyValue, 0n, at);
      expect((await f.ppu.getAgreement(id)).tariffVersion).to.equal(1n);
    });

    it("caps spending per period: the excess is forgiven and the cap resets next period", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, {
        machineId: f.k1Machine,
        spendingCap: 2n * ONE,
        capPeriod: DAY,
      });
      const start = (await f.ppu.getAgreement(id)).startTime as bigint;
      // 4 kWh = 1 token: under the cap.
      await f.ppu.getFunction("record")([
        signed(f, reading(id, f.k1Machine, 4_000n, await now()), f.k1Key),
      ]);
      // 8 kWh more = 2 tokens, but only 1 token of the cap is left: 1 token is forgiven.
      const at = await now();
      const tx = f.ppu.getFunction("record")([
        signed(f, reading(id, f.k1Machine, 12_000n, at), f.k1Key),
      ]);
      await expect(tx)
        .to.emit(f.ppu, "SpendingCapReached")
        .withArgs(id, start, 2n * ONE, ONE);
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 12_000n, 8_000n, ONE, anyValue, 0n, at);
      expect((await f.ppu.getAgreement(id)).totalCharged).to.equal(2n * ONE);
      // Next period: the cap applies afresh.
      await networkHelpers.time.increaseTo(start + DAY + 10n);
      const later = await now();
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 16_000n, later), f.k1Key)]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 16_000n, 4_000n, ONE, anyValue, 0n, later);
    });

    it("warns once when the escrow crosses the low-balance threshold", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, {
        machineId: f.k1Machine,
        deposit: 10n * ONE,
        lowBalanceThreshold: 3n * ONE,
      });
      const at = await now();
      // 6 tokens used: escrow 4, above the threshold.
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 24_000n, at), f.k1Key)]),
      ).not.to.emit(f.ppu, "LowBalance");
      // 2 more: escrow 2, below the threshold.
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 32_000n, at), f.k1Key)]),
      )
        .to.emit(f.ppu, "LowBalance")
        .withArgs(id, 2n * ONE, 3n * ONE);
      // Still below: no second warning.
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 33_000n, at), f.k1Key)]),
      ).not.to.emit(f.ppu, "LowBalance");
      // A top-up lifts the escrow above the threshold; the next crossing warns again.
      await f.eurc.connect(f.lessee).getFunction("approve")(f.ppuAddress, 5n * ONE);
      await f.ppu.connect(f.lessee).getFunction("topUp")(id, 5n * ONE);
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 49_000n, at), f.k1Key)]),
      )
        .to.emit(f.ppu, "LowBalance")
        .withArgs(id, 2_750_000n, 3n * ONE); // 15 funded - 12.25 charged
    });

    it("turns what the escrow cannot cover into debt", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine, deposit: ONE });
      const at = await now();
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 12_000n, at), f.k1Key)]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 12_000n, 12_000n, 3n * ONE, 0n, 2n * ONE, at);
      const agreement = await f.ppu.getAgreement(id);
      expect(agreement.escrow).to.equal(0n);
      expect(agreement.debt).to.equal(2n * ONE);
      // Only what the escrow held is the owner's earnings so far.
      expect(await f.ppu.unsettledEarnings(id)).to.equal(ONE);
    });
  });

  describe("skipped readings never revert the batch", () => {
    it("skips stale, replayed and out-of-order readings with StaleReading", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      const at = await now();
      const r100 = signed(f, reading(id, f.k1Machine, 100n, at), f.k1Key);
      const r50 = signed(f, reading(id, f.k1Machine, 50n, at), f.k1Key);
      await f.ppu.getFunction("record")([r100]);
      const tx = f.ppu.getFunction("record")([r100, r50]);
      await expect(tx)
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.StaleReading, 100n);
      await expect(tx)
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.StaleReading, 50n);
      await expect(tx).not.to.emit(f.ppu, "UsageRecorded");
      expect((await f.ppu.getAgreement(id)).totalCharged).to.equal(cost(100n));
    });

    it("skips each invalid reading with its reason while the valid ones in the batch are charged", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      const other = await openAgreement(f, { machineId: f.p256Machine }, f.lessee2);
      const at = await now();
      const cases: [ReturnType<typeof signed>, number, bigint, Hex][] = [
        [
          signed(f, reading(999n, f.k1Machine, 1n, at), f.k1Key),
          SkipReason.UnknownAgreement,
          999n,
          f.k1Machine,
        ],
        [
          signed(f, reading(other, f.k1Machine, 2n, at), f.k1Key),
          SkipReason.MachineMismatch,
          other,
          f.k1Machine,
        ],
        [
          signed(f, reading(id, f.k1Machine, 3n, at), secpKey("impostor")),
          SkipReason.BadSignature,
          id,
          f.k1Machine,
        ],
        [
          signed(f, reading(id, f.k1Machine, 4n, at - 10n * DAY), f.k1Key),
          SkipReason.BeforeStart,
          id,
          f.k1Machine,
        ],
        [
          signed(f, reading(id, f.k1Machine, 5n, at + DAY), f.k1Key),
          SkipReason.FutureTimestamp,
          id,
          f.k1Machine,
        ],
      ];
      const good = signed(f, reading(id, f.k1Machine, 10n, at), f.k1Key);
      const tx = f.ppu.getFunction("record")([...cases.map((c) => c[0]), good]);
      for (const [entry, reason, agreementId, machineId] of cases) {
        await expect(tx)
          .to.emit(f.ppu, "ReadingSkipped")
          .withArgs(agreementId, machineId, reason, entry.reading.cumulativeUnits);
      }
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 10n, 10n, anyValue, anyValue, 0n, at);
    });

    it("skips a malformed signature (wrong length, high s) as BadSignature", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      const p = await openAgreement(f, { machineId: f.p256Machine });
      const at = await now();
      const short = {
        ...signed(f, reading(id, f.k1Machine, 1n, at), f.k1Key),
        signature: "0x1234",
      };
      const good = signed(f, reading(p, f.p256Machine, 1n, at), f.p256Key);
      // Flip s to n - s: still a valid curve signature, but malleable and refused.
      const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
      const s = BigInt(`0x${good.signature.slice(66, 130)}`);
      const highS = {
        ...good,
        signature: `${good.signature.slice(0, 66)}${(n - s).toString(16).padStart(64, "0")}`,
      };
      // The same for secp256k1: n - s with the other recovery id recovers the same key.
      const k1 = signed(f, reading(id, f.k1Machine, 2n, at), f.k1Key);
      const k1s = BigInt(`0x${k1.signature.slice(66, 130)}`);
      const k1v = parseInt(k1.signature.slice(130, 132), 16);
      const k1HighS = {
        ...k1,
        signature: `${k1.signature.slice(0, 66)}${(SECP256K1_N - k1s).toString(16).padStart(64, "0")}${(k1v === 27 ? 28 : 27).toString(16)}`,
      };
      // The ecrecover precompile itself still recovers the device key from the flipped signature.
      const sig = k1HighS.signature;
      const recovered = await ethers.provider.call({
        to: "0x0000000000000000000000000000000000000001",
        data: ethers.concat([
          digestOf(f, k1.reading),
          ethers.zeroPadValue(`0x${sig.slice(130, 132)}`, 32),
          `0x${sig.slice(2, 66)}`,
          `0x${sig.slice(66, 130)}`,
        ]),
      });
      expect(ethers.getAddress(ethers.dataSlice(recovered, 12))).to.equal(
        ethers.computeAddress(f.k1Key.privateKey),
      );
      const tx = f.ppu.getFunction("record")([short, highS, k1HighS]);
      await expect(tx)
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.BadSignature, 1n);
      await expect(tx)
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(p, f.p256Machine, SkipReason.BadSignature, 1n);
      await expect(tx)
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.BadSignature, 2n);
      await expect(tx).not.to.emit(f.ppu, "UsageRecorded");
    });

    it("skips readings after the end (AfterEnd) and after the dispute window (TooLate)", async () => {
      const f = await loadDeployment();
      const endTime = (await now()) + DAY;
      const id = await openAgreement(f, { machineId: f.k1Machine, endTime, disputeWindow: DAY });
      await networkHelpers.time.increaseTo(endTime + HOUR);
      const afterEnd = signed(f, reading(id, f.k1Machine, 1n, endTime + 1n), f.k1Key);
      await expect(f.ppu.getFunction("record")([afterEnd]))
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.AfterEnd, 1n);
      await networkHelpers.time.increaseTo(endTime + DAY + 1n);
      const tooLate = signed(f, reading(id, f.k1Machine, 2n, endTime - 1n), f.k1Key);
      await expect(f.ppu.getFunction("record")([tooLate]))
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.TooLate, 2n);
    });

    it("skips readings of a closed agreement (AgreementNotActive)", async () => {
      const f = await loadDeployment();
      const endTime = (await now()) + HOUR;
      const id = await openAgreement(f, { machineId: f.k1Machine, endTime, disputeWindow: 0n });
      await networkHelpers.time.increaseTo(endTime + 1n);
      await f.ppu.getFunction("closeAgreement")(id);
      expect((await f.ppu.getAgreement(id)).status).to.equal(BigInt(AgreementStatus.Closed));
      await expect(
        f.ppu.getFunction("record")([
          signed(f, reading(id, f.k1Machine, 1n, endTime - 1n), f.k1Key),
        ]),
      )
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.AgreementNotActive, 1n);
    });
  });

  describe("key rotation and revocation", () => {
    it("after rotation the old key's readings are refused and the new key's accepted", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      const next = p256Key();
      await f.ppu.connect(f.owner).getFunction("rotateDeviceKey")(f.k1Machine, deviceKeyOf(next));
      const at = await now();
      const tx = f.ppu.getFunction("record")([
        signed(f, reading(id, f.k1Machine, 10n, at), f.k1Key),
        signed(f, reading(id, f.k1Machine, 20n, at), next),
      ]);
      await expect(tx)
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.BadSignature, 10n);
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 20n, 20n, anyValue, anyValue, 0n, at);
    });

    it("a revoked key's readings are skipped from the revocation on (NoDeviceKey)", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.p256Machine });
      const before = await now();
      await f.ppu.getFunction("record")([
        signed(f, reading(id, f.p256Machine, 10n, before), f.p256Key),
      ]);
      await f.ppu.connect(f.owner).getFunction("revokeDeviceKey")(f.p256Machine);
      await expect(
        f.ppu.getFunction("record")([
          signed(f, reading(id, f.p256Machine, 20n, await now()), f.p256Key),
        ]),
      )
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.p256Machine, SkipReason.NoDeviceKey, 20n);
      expect((await f.ppu.getAgreement(id)).cumulativeUnits).to.equal(10n);
    });
  });

  describe("typed data", () => {
    it("the contract's reading and batch digests equal the off-chain ones devices and oracles sign", async () => {
      const f = await loadDeployment();
      const readings = [
        reading(1n, f.k1Machine, 123_456n, 1_700_000_000n),
        reading(2n ** 200n, f.oracleMachine, 2n ** 255n, 2n ** 64n - 1n),
      ];
      for (const r of readings) {
        expect(await f.ppu.readingDigest(r)).to.equal(bytesToHex(readingDigest(f.domain, r)));
      }
      expect(await f.ppu.batchDigest(readings)).to.equal(
        bytesToHex(readingBatchDigest(f.domain, readings)),
      );
      expect(await f.ppu.batchDigest([])).to.equal(bytesToHex(readingBatchDigest(f.domain, [])));
    });

    it("skips a meter beyond the stored range (2^96 units) without reverting", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      const huge = 2n ** 96n;
      await expect(
        f.ppu.getFunction("record")([
          signed(f, reading(id, f.k1Machine, huge, await now()), f.k1Key),
        ]),
      )
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.StaleReading, huge);
      expect((await f.ppu.getAgreement(id)).cumulativeUnits).to.equal(0n);
    });
  });

  describe("offline catch-up", () => {
    it("the newest of many offline readings settles everything in one submission", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      const start = await now();
      await networkHelpers.time.increase(10n * HOUR);
      // The machine was offline for ten hours and kept 600 readings; only the newest is sent.
      const offline = Array.from({ length: 600 }, (_, i) =>
        reading(id, f.k1Machine, BigInt(i + 1) * 25n, start + BigInt(i) * 60n),
      );
      const newest = offline[offline.length - 1]!;
      await expect(f.ppu.getFunction("record")([signed(f, newest, f.k1Key)]))
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 15_000n, 15_000n, cost(15_000n), anyValue, 0n, newest.timestamp);
      // The older readings arriving afterwards, in any order, change nothing.
      const late = [offline[10]!, offline[599]!, offline[3]!].map((r) => signed(f, r, f.k1Key));
      const tx = f.ppu.getFunction("record")(late);
      await expect(tx).not.to.emit(f.ppu, "UsageRecorded");
      await expect(tx)
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.StaleReading, 275n);
      expect((await f.ppu.getAgreement(id)).totalCharged).to.equal(cost(15_000n));
    });
  });
});
