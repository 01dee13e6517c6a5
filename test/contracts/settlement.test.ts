/**
 * Settlement: owners withdraw (pull) or a settle call pays out in batch; debt left by an empty
 * escrow becomes a direct-debit request; the bank confirms the collection or reports a return
 * with its ISO reason code, which suspends the agreement until the debt is paid.
 */
import { expect } from "chai";
import { anyValue } from "@nomicfoundation/hardhat-ethers-chai-matchers/withArgs";
import {
  AgreementStatus,
  DEBIT_LEAD_TIME,
  DebitStatus,
  deviceKeyOf,
  ethers,
  loadDeployment,
  machineIdOf,
  now,
  ONE,
  openAgreement,
  reading,
  reasonCode,
  secpKey,
  signed,
  SkipReason,
  tariff,
  TrustMode,
  type Fixture,
} from "./fixtures.ts";
import type { Hex } from "viem";

const MANDATE = ethers.id("mandate:DE-lessee-1") as Hex;

/** An agreement with 1 token of escrow that is charged 3 tokens: 2 tokens of debt. */
async function inDebt(f: Fixture, mandateRef: Hex = MANDATE) {
  const id = await openAgreement(f, { machineId: f.k1Machine, deposit: ONE, mandateRef });
  await f.ppu.getFunction("record")([
    signed(f, reading(id, f.k1Machine, 12_000n, await now()), f.k1Key),
  ]);
  return id;
}

describe("PayPerUse: settlement and direct debit", function () {
  describe("withdraw and settle", () => {
    it("settle pays an agreement's earnings to the payee", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      await f.ppu.getFunction("record")([
        signed(f, reading(id, f.k1Machine, 40_000n, await now()), f.k1Key),
      ]);
      const token = await f.eurc.getAddress();
      expect(await f.ppu.unsettledEarnings(id)).to.equal(10n * ONE);
      const tx = f.ppu.connect(f.payout).getFunction("settle")([id]);
      await expect(tx)
        .to.emit(f.ppu, "EarningsPaid")
        .withArgs(f.payout.address, token, 10n * ONE);
      await expect(tx).to.changeTokenBalances(
        ethers,
        f.eurc,
        [f.ppu, f.payout],
        [-10n * ONE, 10n * ONE],
      );
      expect(await f.ppu.earnings(f.payout.address, token)).to.equal(0n);
      expect(await f.ppu.unsettledEarnings(id)).to.equal(0n);
      await expect(f.ppu.connect(f.payout).getFunction("withdraw")(token))
        .to.be.revertedWithCustomError(f.ppu, "PayPerUse_NothingToWithdraw")
        .withArgs(f.payout.address, token);
    });

    it("settle pays every agreement's payee in one call", async () => {
      const f = await loadDeployment();
      // A second owner with its own machine and payout.
      const other = machineIdOf("other-owner-press");
      const key = secpKey("other-owner-press");
      await f.ppu.connect(f.owner2).getFunction("registerMachine")(
        other,
        f.owner2.address,
        TrustMode.DeviceSigned,
        0n,
        deviceKeyOf(key),
      );
      await f.ppu.connect(f.owner2).getFunction("publishTariff")(
        other,
        tariff({ token: await f.eurc.getAddress() }),
      );
      const a = await openAgreement(f, { machineId: f.k1Machine });
      const b = await openAgreement(f, { machineId: other }, f.lessee2);
      const at = await now();
      await f.ppu.getFunction("record")([
        signed(f, reading(a, f.k1Machine, 4_000n, at), f.k1Key),
        signed(f, reading(b, other, 8_000n, at), key),
      ]);
      const token = await f.eurc.getAddress();
      const tx = f.ppu.connect(f.stranger).getFunction("settle")([a, b]);
      await expect(tx).to.emit(f.ppu, "EarningsPaid").withArgs(f.payout.address, token, ONE);
      await expect(tx)
        .to.emit(f.ppu, "EarningsPaid")
        .withArgs(f.owner2.address, token, 2n * ONE);
      await expect(tx).to.changeTokenBalances(
        ethers,
        f.eurc,
        [f.ppu, f.payout, f.owner2],
        [-3n * ONE, ONE, 2n * ONE],
      );
    });

    it("settle pays what accrued to the payout address current at settlement", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      await f.ppu.getFunction("record")([
        signed(f, reading(id, f.k1Machine, 4_000n, await now()), f.k1Key),
      ]);
      // Earnings are paid to the payout address that is current when settlement runs.
      await f.ppu.connect(f.owner).getFunction("transferMachine")(f.k1Machine, f.owner2.address);
      await f.ppu.connect(f.owner2).getFunction("setPayout")(f.k1Machine, f.owner2.address);
      await f.ppu.getFunction("record")([
        signed(f, reading(id, f.k1Machine, 8_000n, await now()), f.k1Key),
      ]);
      const token = await f.eurc.getAddress();
      expect(await f.ppu.unsettledEarnings(id)).to.equal(2n * ONE);
      const tx = f.ppu.getFunction("settle")([id]);
      await expect(tx)
        .to.emit(f.ppu, "EarningsPaid")
        .withArgs(f.owner2.address, token, 2n * ONE);
      await expect(tx).to.changeTokenBalances(ethers, f.eurc, [f.payout, f.owner2], [0n, 2n * ONE]);
    });
  });

  describe("debt and direct debit", () => {
    it("settle requests a direct debit for the debt, with the mandate reference and due date", async () => {
      const f = await loadDeployment();
      const id = await inDebt(f);
      const token = await f.eurc.getAddress();
      const tx = await f.ppu.getFunction("settle")([id]);
      const due = (await now()) + DEBIT_LEAD_TIME;
      await expect(tx)
        .to.emit(f.ppu, "DirectDebitRequested")
        .withArgs(1n, id, MANDATE, token, 2n * ONE, due);
      const debit = await f.ppu.getDirectDebit(1n);
      expect(debit.status).to.equal(BigInt(DebitStatus.Requested));
      expect(debit.amount).to.equal(2n * ONE);
      // No second request while one is open.
      await expect(f.ppu.getFunction("settle")([id])).not.to.emit(f.ppu, "DirectDebitRequested");
    });

    it("no direct debit without a mandate", async () => {
      const f = await loadDeployment();
      const id = await inDebt(f, ethers.ZeroHash as Hex);
      await expect(f.ppu.getFunction("settle")([id])).not.to.emit(f.ppu, "DirectDebitRequested");
      expect((await f.ppu.getAgreement(id)).debt).to.equal(2n * ONE);
    });

    it("the bank confirms the collection: it pays in, the owner is credited, the debt is gone", async () => {
      const f = await loadDeployment();
      const id = await inDebt(f);
      await f.ppu.getFunction("settle")([id]);
      await f.eurc.connect(f.bank).getFunction("approve")(f.ppuAddress, 2n * ONE);
      const token = await f.eurc.getAddress();
      const before = await f.ppu.unsettledEarnings(id);
      const tx = f.ppu.connect(f.bank).getFunction("confirmDirectDebit")(1n);
      await expect(tx)
        .to.emit(f.ppu, "DirectDebitCollected")
        .withArgs(1n, id, 2n * ONE);
      await expect(tx).to.changeTokenBalances(
        ethers,
        f.eurc,
        [f.bank, f.ppu],
        [-2n * ONE, 2n * ONE],
      );
      expect(await f.ppu.unsettledEarnings(id)).to.equal(before + 2n * ONE);
      expect(await f.ppu.earnings(f.payout.address, token)).to.equal(0n);
      expect((await f.ppu.getAgreement(id)).debt).to.equal(0n);
      expect((await f.ppu.getDirectDebit(1n)).status).to.equal(BigInt(DebitStatus.Collected));
    });

    it("a returned debit (ISO reason AC04) suspends the agreement; readings are skipped until paid", async () => {
      const f = await loadDeployment();
      const id = await inDebt(f);
      await f.ppu.getFunction("settle")([id]);
      const tx = f.ppu.connect(f.bank).getFunction("reportDirectDebitReturn")(
        1n,
        reasonCode("AC04"),
      );
      await expect(tx)
        .to.emit(f.ppu, "DirectDebitReturned")
        .withArgs(1n, id, 2n * ONE, reasonCode("AC04"), false);
      await expect(tx).to.emit(f.ppu, "AgreementSuspended").withArgs(id, 1n, reasonCode("AC04"));
      const debit = await f.ppu.getDirectDebit(1n);
      expect(debit.status).to.equal(BigInt(DebitStatus.Returned));
      expect(debit.returnReason).to.equal(reasonCode("AC04"));
      expect((await f.ppu.getAgreement(id)).status).to.equal(BigInt(AgreementStatus.Suspended));

      await expect(
        f.ppu.getFunction("record")([
          signed(f, reading(id, f.k1Machine, 20_000n, await now()), f.k1Key),
        ]),
      )
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.k1Machine, SkipReason.AgreementNotActive, 20_000n);

      // Paying the debt in full reinstates it.
      await f.eurc.connect(f.lessee).getFunction("approve")(f.ppuAddress, 2n * ONE);
      const pay = f.ppu.connect(f.lessee).getFunction("payDebt")(id, 2n * ONE);
      await expect(pay)
        .to.emit(f.ppu, "DebtRepaid")
        .withArgs(id, f.lessee.address, 2n * ONE, 0n);
      await expect(pay).to.emit(f.ppu, "AgreementReinstated").withArgs(id);
      expect((await f.ppu.getAgreement(id)).status).to.equal(BigInt(AgreementStatus.Active));
    });

    it("a return after collection restores the debt and suspends; a top-up repays debt first and reinstates", async () => {
      const f = await loadDeployment();
      const id = await inDebt(f);
      await f.ppu.getFunction("settle")([id]);
      await f.eurc.connect(f.bank).getFunction("approve")(f.ppuAddress, 2n * ONE);
      await f.ppu.connect(f.bank).getFunction("confirmDirectDebit")(1n);
      await expect(
        f.ppu.connect(f.bank).getFunction("reportDirectDebitReturn")(1n, reasonCode("MD06")),
      )
        .to.emit(f.ppu, "DirectDebitReturned")
        .withArgs(1n, id, 2n * ONE, reasonCode("MD06"), true);
      const suspended = await f.ppu.getAgreement(id);
      expect(suspended.status).to.equal(BigInt(AgreementStatus.Suspended));
      expect(suspended.debt).to.equal(2n * ONE);

      await f.eurc.connect(f.lessee).getFunction("approve")(f.ppuAddress, 5n * ONE);
      const tx = f.ppu.connect(f.lessee).getFunction("topUp")(id, 5n * ONE);
      await expect(tx)
        .to.emit(f.ppu, "EscrowToppedUp")
        .withArgs(id, f.lessee.address, 5n * ONE, 3n * ONE, 2n * ONE);
      await expect(tx).to.emit(f.ppu, "AgreementReinstated").withArgs(id);
      const active = await f.ppu.getAgreement(id);
      expect(active.status).to.equal(BigInt(AgreementStatus.Active));
      expect(active.debt).to.equal(0n);
      expect(active.escrow).to.equal(3n * ONE);
    });

    it("a refund after the collection was already paid out re-opens the debt; its repayment goes to the bank, not to the owner twice", async () => {
      const f = await loadDeployment();
      const id = await inDebt(f);
      await f.ppu.getFunction("settle")([id]);
      await f.eurc.connect(f.bank).getFunction("approve")(f.ppuAddress, 2n * ONE);
      await f.ppu.connect(f.bank).getFunction("confirmDirectDebit")(1n);
      // The owner is paid the collected amount before the bank reports the refund.
      await expect(f.ppu.getFunction("settle")([id]))
        .to.emit(f.ppu, "EarningsPaid")
        .withArgs(f.payout.address, await f.eurc.getAddress(), 2n * ONE);
      await expect(
        f.ppu.connect(f.bank).getFunction("reportDirectDebitReturn")(1n, reasonCode("MD06")),
      )
        .to.emit(f.ppu, "DirectDebitReturned")
        .withArgs(1n, id, 2n * ONE, reasonCode("MD06"), true);
      const agreement = await f.ppu.getAgreement(id);
      expect(agreement.debt).to.equal(2n * ONE);
      expect(agreement.status).to.equal(BigInt(AgreementStatus.Suspended));
      expect(await f.ppu.earnings(f.bank.address, await f.eurc.getAddress())).to.equal(0n);
      expect(await f.ppu.unsettledEarnings(id)).to.equal(0n);
      // Paying the re-opened debt reinstates the agreement.
      await f.eurc.connect(f.lessee).getFunction("approve")(f.ppuAddress, 2n * ONE);
      await expect(f.ppu.connect(f.lessee).getFunction("payDebt")(id, 2n * ONE)).to.emit(
        f.ppu,
        "AgreementReinstated",
      );
      expect((await f.ppu.getAgreement(id)).debt).to.equal(0n);
      // The repayment refills what the owner was already paid: it is the bank's, not the owner's again.
      const token = await f.eurc.getAddress();
      expect(await f.ppu.unsettledEarnings(id)).to.equal(0n);
      expect(await f.ppu.earnings(f.bank.address, token)).to.equal(2n * ONE);
      await expect(f.ppu.getFunction("settle")([id])).not.to.emit(f.ppu, "EarningsPaid");
      await expect(f.ppu.connect(f.bank).getFunction("withdraw")(token)).to.changeTokenBalances(
        ethers,
        f.eurc,
        [f.bank, f.ppu],
        [2n * ONE, -2n * ONE],
      );
      expect(await f.eurc.balanceOf(f.ppuAddress)).to.equal(
        (await f.ppu.getAgreement(id)).escrow + (await f.ppu.unsettledEarnings(id)),
      );
    });

    it("a partial payment reduces the debt but keeps the agreement suspended", async () => {
      const f = await loadDeployment();
      const id = await inDebt(f);
      await f.ppu.getFunction("settle")([id]);
      await f.ppu.connect(f.bank).getFunction("reportDirectDebitReturn")(1n, reasonCode("AM04"));
      await f.eurc.connect(f.stranger).getFunction("approve")(f.ppuAddress, ONE);
      const tx = f.ppu.connect(f.stranger).getFunction("payDebt")(id, ONE);
      await expect(tx).to.emit(f.ppu, "DebtRepaid").withArgs(id, f.stranger.address, ONE, ONE);
      await expect(tx).not.to.emit(f.ppu, "AgreementReinstated");
      expect((await f.ppu.getAgreement(id)).status).to.equal(BigInt(AgreementStatus.Suspended));
      // A new direct debit can be requested for the rest.
      await expect(f.ppu.getFunction("settle")([id]))
        .to.emit(f.ppu, "DirectDebitRequested")
        .withArgs(2n, id, MANDATE, anyValue, ONE, anyValue);
    });
  });
});
