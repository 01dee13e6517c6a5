/**
 * Agreements and escrow: open with approve or with an EIP-2612 permit in the same call, top up
 * both ways, mandate reference, end, and close with the refund after the dispute window (never
 * before), minimum charge and base fee.
 */
import { expect } from "chai";
import {
  AgreementStatus,
  DAY,
  ethers,
  HOUR,
  loadDeployment,
  networkHelpers,
  now,
  ONE,
  openAgreement,
  openParams,
  reading,
  signed,
  signPermit,
  tariff,
} from "./fixtures.ts";

describe("PayPerUse: agreements and escrow", function () {
  describe("openAgreement", () => {
    it("pulls the deposit after approve, pins the tariff version and emits AgreementOpened", async () => {
      const f = await loadDeployment();
      const params = await openParams({ machineId: f.k1Machine, deposit: 50n * ONE });
      await f.eurc.connect(f.lessee).getFunction("approve")(f.ppuAddress, params.deposit);
      const tx = f.ppu.connect(f.lessee).getFunction("openAgreement")(params);
      await expect(tx)
        .to.emit(f.ppu, "AgreementOpened")
        .withArgs(
          1n,
          f.k1Machine,
          f.lessee.address,
          1,
          await f.eurc.getAddress(),
          50n * ONE,
          params.endTime,
          params.disputeWindow,
        );
      await expect(tx).to.changeTokenBalances(
        ethers,
        f.eurc,
        [f.lessee, f.ppu],
        [-50n * ONE, 50n * ONE],
      );
      const agreement = await f.ppu.getAgreement(1n);
      expect(agreement.status).to.equal(BigInt(AgreementStatus.Active));
      expect(agreement.lessee).to.equal(f.lessee.address);
      expect(agreement.escrow).to.equal(50n * ONE);
      expect(agreement.tariffVersion).to.equal(1n);
      expect(agreement.startTime).to.equal(await now());
      expect(await f.ppu.agreementCount()).to.equal(1n);
    });

    it("opens with an EIP-2612 permit in the same call, without a prior approve", async () => {
      const f = await loadDeployment();
      const params = await openParams({ machineId: f.k1Machine, deposit: 20n * ONE });
      const permit = await signPermit(f.eurc, f.lessee, f.ppuAddress, params.deposit);
      expect(await f.eurc.allowance(f.lessee.address, f.ppuAddress)).to.equal(0n);
      await expect(
        f.ppu.connect(f.lessee).getFunction("openAgreementWithPermit")(params, permit),
      ).to.changeTokenBalances(ethers, f.eurc, [f.lessee, f.ppu], [-20n * ONE, 20n * ONE]);
      expect((await f.ppu.getAgreement(1n)).escrow).to.equal(20n * ONE);
      expect(await f.eurc.nonces(f.lessee.address)).to.equal(1n);
    });

    it("still opens when the permit was already used (front-run): the allowance is enough", async () => {
      const f = await loadDeployment();
      const params = await openParams({ machineId: f.k1Machine, deposit: 20n * ONE });
      const permit = await signPermit(f.eurc, f.lessee, f.ppuAddress, params.deposit);
      // Someone submits the permit first; the call must not fail because of it.
      await f.eurc.connect(f.stranger).getFunction("permit")(
        f.lessee.address,
        f.ppuAddress,
        permit.value,
        permit.deadline,
        permit.v,
        permit.r,
        permit.s,
      );
      await expect(
        f.ppu.connect(f.lessee).getFunction("openAgreementWithPermit")(params, permit),
      ).to.emit(f.ppu, "AgreementOpened");
    });

    it("stores the mandate reference given at opening and lets the lessee change it", async () => {
      const f = await loadDeployment();
      const mandate = ethers.id("mandate-1");
      const id = await openAgreement(f, {
        machineId: f.k1Machine,
        mandateRef: mandate as `0x${string}`,
      });
      expect((await f.ppu.getAgreement(id)).mandateRef).to.equal(mandate);
      const next = ethers.id("mandate-2");
      await expect(f.ppu.connect(f.lessee).getFunction("setMandate")(id, next))
        .to.emit(f.ppu, "MandateSet")
        .withArgs(id, next);
      expect((await f.ppu.getAgreement(id)).mandateRef).to.equal(next);
    });
  });

  describe("topUp", () => {
    it("adds to the escrow with approve; anyone may top up", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine, deposit: 10n * ONE });
      await f.eurc.connect(f.stranger).getFunction("approve")(f.ppuAddress, 5n * ONE);
      const tx = f.ppu.connect(f.stranger).getFunction("topUp")(id, 5n * ONE);
      await expect(tx)
        .to.emit(f.ppu, "EscrowToppedUp")
        .withArgs(id, f.stranger.address, 5n * ONE, 15n * ONE, 0n);
      await expect(tx).to.changeTokenBalances(
        ethers,
        f.eurc,
        [f.stranger, f.ppu],
        [-5n * ONE, 5n * ONE],
      );
    });

    it("adds to the escrow with a permit in the same call", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine, deposit: 10n * ONE });
      const permit = await signPermit(f.eurc, f.lessee2, f.ppuAddress, 3n * ONE);
      await expect(f.ppu.connect(f.lessee2).getFunction("topUpWithPermit")(id, 3n * ONE, permit))
        .to.emit(f.ppu, "EscrowToppedUp")
        .withArgs(id, f.lessee2.address, 3n * ONE, 13n * ONE, 0n);
    });
  });

  describe("end and close", () => {
    it("the lessee ends early; the refund waits for the dispute window, then returns the rest", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, {
        machineId: f.k1Machine,
        deposit: 10n * ONE,
        disputeWindow: 2n * DAY,
      });
      const used = signed(f, reading(id, f.k1Machine, 4_000n, await now()), f.k1Key);
      await f.ppu.getFunction("record")([used]); // 4 kWh at 0.25 = 1 token
      await expect(f.ppu.connect(f.lessee).getFunction("endAgreement")(id)).to.emit(
        f.ppu,
        "AgreementEnded",
      );
      const endTime = (await f.ppu.getAgreement(id)).endTime as bigint;
      expect(endTime).to.equal(await now());

      // Not before the dispute window has passed.
      await expect(f.ppu.getFunction("closeAgreement")(id)).to.be.revertedWithCustomError(
        f.ppu,
        "PayPerUse_DisputeWindowOpen",
      );
      await networkHelpers.time.increaseTo(endTime + 2n * DAY - 5n);
      await expect(f.ppu.getFunction("closeAgreement")(id)).to.be.revertedWithCustomError(
        f.ppu,
        "PayPerUse_DisputeWindowOpen",
      );
      // A late reading taken before the end still arrives within the window.
      const late = signed(f, reading(id, f.k1Machine, 8_000n, endTime), f.k1Key);
      await expect(f.ppu.getFunction("record")([late])).to.emit(f.ppu, "UsageRecorded");

      await networkHelpers.time.increaseTo(endTime + 2n * DAY + 1n);
      const tx = f.ppu.connect(f.stranger).getFunction("closeAgreement")(id);
      await expect(tx)
        .to.emit(f.ppu, "AgreementClosed")
        .withArgs(id, 8n * ONE, 2n * ONE);
      await expect(tx).to.changeTokenBalances(
        ethers,
        f.eurc,
        [f.lessee, f.ppu],
        [8n * ONE, -8n * ONE],
      );
      expect((await f.ppu.getAgreement(id)).status).to.equal(BigInt(AgreementStatus.Closed));
    });

    it("the machine owner may end an agreement too", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      await expect(f.ppu.connect(f.owner).getFunction("endAgreement")(id))
        .to.emit(f.ppu, "AgreementEnded")
        .withArgs(id, (await now()) + 1n);
    });

    it("charges the minimum charge at close when usage stayed below it", async () => {
      const f = await loadDeployment();
      await f.ppu.connect(f.owner).getFunction("publishTariff")(
        f.k1Machine,
        tariff({ token: await f.eurc.getAddress(), minimumCharge: 5n * ONE }),
      );
      const id = await openAgreement(f, {
        machineId: f.k1Machine,
        tariffVersion: 2,
        deposit: 10n * ONE,
        endTime: (await now()) + DAY,
        disputeWindow: HOUR,
      });
      await f.ppu.getFunction("record")([
        signed(f, reading(id, f.k1Machine, 4_000n, await now()), f.k1Key),
      ]);
      await networkHelpers.time.increase(DAY + HOUR + 1n);
      await expect(f.ppu.getFunction("closeAgreement")(id))
        .to.emit(f.ppu, "AgreementClosed")
        .withArgs(id, 5n * ONE, 5n * ONE);
      expect(await f.ppu.unsettledEarnings(id)).to.equal(5n * ONE);
    });
    it("charges the base fee once per started period, at readings and at close", async () => {
      const f = await loadDeployment();
      await f.ppu.connect(f.owner).getFunction("publishTariff")(
        f.k1Machine,
        tariff({ token: await f.eurc.getAddress(), baseFee: ONE, period: DAY }),
      );
      const id = await openAgreement(f, {
        machineId: f.k1Machine,
        tariffVersion: 2,
        deposit: 10n * ONE,
        endTime: (await now()) + (7n * DAY) / 2n,
        disputeWindow: HOUR,
      });
      const start = (await f.ppu.getAgreement(id)).startTime as bigint;
      // First period: 4 kWh (1 token) plus the first base fee.
      await networkHelpers.time.increaseTo(start + 2n * HOUR);
      await expect(
        f.ppu.getFunction("record")([
          signed(f, reading(id, f.k1Machine, 4_000n, start + HOUR), f.k1Key),
        ]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 4_000n, 4_000n, 2n * ONE, 8n * ONE, 0n, start + HOUR);
      // Same period again: no second base fee.
      await expect(
        f.ppu.getFunction("record")([
          signed(f, reading(id, f.k1Machine, 8_000n, start + 2n * HOUR), f.k1Key),
        ]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 8_000n, 4_000n, ONE, 7n * ONE, 0n, start + 2n * HOUR);
      // In the third period: the fees of periods two and three.
      const later = start + (5n * DAY) / 2n;
      await networkHelpers.time.increaseTo(later);
      await expect(
        f.ppu.getFunction("record")([signed(f, reading(id, f.k1Machine, 12_000n, later), f.k1Key)]),
      )
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(id, f.k1Machine, 12_000n, 4_000n, 3n * ONE, 4n * ONE, 0n, later);
      // The agreement ends in its fourth period: closing charges that period's fee.
      await networkHelpers.time.increaseTo(start + (7n * DAY) / 2n + HOUR + 1n);
      await expect(f.ppu.getFunction("closeAgreement")(id))
        .to.emit(f.ppu, "AgreementClosed")
        .withArgs(id, 3n * ONE, 7n * ONE);
    });

    it("does not charge a base-fee period that would start exactly at the end", async () => {
      const f = await loadDeployment();
      await f.ppu.connect(f.owner).getFunction("publishTariff")(
        f.k1Machine,
        tariff({ token: await f.eurc.getAddress(), baseFee: ONE, period: DAY }),
      );
      const start = (await now()) + 100n;
      await networkHelpers.time.setNextBlockTimestamp(start - 1n);
      const params = await openParams({
        machineId: f.k1Machine,
        tariffVersion: 2,
        deposit: 10n * ONE,
        endTime: start + 2n * DAY,
        disputeWindow: 0n,
      });
      await f.eurc.connect(f.lessee).getFunction("approve")(f.ppuAddress, params.deposit);
      await networkHelpers.time.setNextBlockTimestamp(start);
      await f.ppu.connect(f.lessee).getFunction("openAgreement")(params);
      const id = (await f.ppu.agreementCount()) as bigint;
      expect((await f.ppu.getAgreement(id)).startTime).to.equal(start);
      // A two-day agreement with a daily fee: two fees, even when the close looks at the very end.
      await networkHelpers.time.increaseTo(start + 2n * DAY + 1n);
      await expect(f.ppu.getFunction("closeAgreement")(id))
        .to.emit(f.ppu, "AgreementClosed")
        .withArgs(id, 8n * ONE, 2n * ONE);
    });

    it("closing with debt refunds nothing and keeps the debt collectable", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, {
        machineId: f.k1Machine,
        deposit: ONE,
        endTime: (await now()) + DAY,
        disputeWindow: 0n,
        mandateRef: ethers.id("mandate") as `0x${string}`,
      });
      await f.ppu.getFunction("record")([
        signed(f, reading(id, f.k1Machine, 8_000n, await now()), f.k1Key),
      ]);
      await networkHelpers.time.increase(DAY + 1n);
      await expect(f.ppu.getFunction("closeAgreement")(id))
        .to.emit(f.ppu, "AgreementClosed")
        .withArgs(id, 0n, 2n * ONE);
      expect((await f.ppu.getAgreement(id)).debt).to.equal(ONE);
      await expect(f.ppu.getFunction("settle")([id])).to.emit(f.ppu, "DirectDebitRequested");
    });
  });
});
