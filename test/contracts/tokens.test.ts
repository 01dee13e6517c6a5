/**
 * The four kinds of token the platform must handle: a standard ERC-20 with permit (EURC-like,
 * covered throughout the other files and here end to end), a USDT-style token whose transfer
 * functions return nothing (works), a fee-on-transfer token (refused with a clear error), and a
 * blocklisting token (a blocked payee does not stop other payees' payouts; its earnings stay
 * claimable).
 */
import { expect } from "chai";
import type { Contract } from "ethers";
import {
  DAY,
  deviceKeyOf,
  ethers,
  HOUR,
  loadDeployment,
  machineIdOf,
  networkHelpers,
  now,
  ONE,
  openAgreement,
  openParams,
  reading,
  secpKey,
  signed,
  tariff,
  TrustMode,
  type Fixture,
} from "./fixtures.ts";
import type { Hex } from "viem";

/** Registers a machine owned by `owner` paying to `payout` with a tariff in `token`. */
async function machineFor(
  f: Fixture,
  name: string,
  token: Contract,
  owner = f.owner,
  payout = f.payout.address,
) {
  const id = machineIdOf(name);
  const key = secpKey(name);
  await f.ppu.connect(owner).getFunction("registerMachine")(
    id,
    payout,
    TrustMode.DeviceSigned,
    0n,
    deviceKeyOf(key),
  );
  await f.ppu.connect(owner).getFunction("publishTariff")(
    id,
    tariff({ token: await token.getAddress() }),
  );
  return { id, key };
}

describe("PayPerUse: token kinds", function () {
  describe("the test tokens behave like the real ones", () => {
    it("all four report 6 decimals and only their owner mints", async () => {
      const f = await loadDeployment();
      for (const token of [f.eurc, f.usdt, f.feeToken, f.blocklist]) {
        expect(await token.decimals()).to.equal(6n);
      }
      expect(await f.usdt.name()).to.equal("Mock Tether USD");
      expect(await f.usdt.symbol()).to.equal("USDT");
      expect(await f.usdt.owner()).to.equal(f.admin.address);
      await expect(
        f.usdt.connect(f.stranger).getFunction("mint")(f.stranger.address, 1n),
      ).to.be.revertedWithCustomError(f.usdt, "MockUSDT_NotOwner");
      await expect(
        f.usdt.connect(f.admin).getFunction("mint")(ethers.ZeroAddress, 1n),
      ).to.be.revertedWithCustomError(f.usdt, "MockUSDT_ZeroAddress");
      await expect(
        f.eurc.connect(f.stranger).getFunction("mint")(f.stranger.address, 1n),
      ).to.be.revertedWithCustomError(f.eurc, "OwnableUnauthorizedAccount");
      await expect(
        f.feeToken.connect(f.admin).getFunction("setFee")(10_001n),
      ).to.be.revertedWithCustomError(f.feeToken, "MockFeeToken_FeeTooHigh");
    });

    it("MockUSDT enforces balances and allowances like USDT", async () => {
      const f = await loadDeployment();
      const usdt = f.usdt;
      await expect(
        usdt.connect(f.owner).getFunction("transfer")(f.stranger.address, 1n),
      ).to.be.revertedWithCustomError(usdt, "MockUSDT_InsufficientBalance");
      await expect(
        usdt.connect(f.lessee).getFunction("transfer")(ethers.ZeroAddress, 1n),
      ).to.be.revertedWithCustomError(usdt, "MockUSDT_ZeroAddress");
      await expect(
        usdt.connect(f.stranger).getFunction("transferFrom")(
          f.lessee.address,
          f.stranger.address,
          1n,
        ),
      ).to.be.revertedWithCustomError(usdt, "MockUSDT_InsufficientAllowance");
      await usdt.connect(f.lessee).getFunction("approve")(f.stranger.address, ethers.MaxUint256);
      await expect(
        usdt.connect(f.stranger).getFunction("transferFrom")(
          f.lessee.address,
          f.stranger.address,
          7n,
        ),
      ).to.changeTokenBalances(ethers, usdt, [f.lessee, f.stranger], [-7n, 7n]);
      // An unlimited allowance is not reduced.
      expect(await usdt.allowance(f.lessee.address, f.stranger.address)).to.equal(
        ethers.MaxUint256,
      );
    });
    it("MockUSDT returns no data from transfer, transferFrom and approve", async () => {
      const f = await loadDeployment();
      const usdt = f.usdt.connect(f.lessee) as Contract;
      for (const data of [
        usdt.interface.encodeFunctionData("transfer", [f.stranger.address, 1n]),
        usdt.interface.encodeFunctionData("approve", [f.stranger.address, 1n]),
      ]) {
        expect(
          await ethers.provider.call({ from: f.lessee.address, to: await usdt.getAddress(), data }),
        ).to.equal("0x");
      }
      // And refuses to change a non-zero allowance to another non-zero value, as USDT does.
      await usdt.getFunction("approve")(f.stranger.address, 5n);
      await expect(
        usdt.getFunction("approve")(f.stranger.address, 6n),
      ).to.be.revertedWithCustomError(f.usdt, "MockUSDT_AllowanceNotZero");
    });

    it("MockFeeToken delivers less than was sent; MockBlocklistToken blocks both directions", async () => {
      const f = await loadDeployment();
      await expect(
        f.feeToken.connect(f.lessee).getFunction("transfer")(f.stranger.address, 10_000n),
      ).to.changeTokenBalances(ethers, f.feeToken, [f.lessee, f.stranger], [-10_000n, 9_900n]);
      await f.blocklist.connect(f.admin).getFunction("setBlocked")(f.stranger.address, true);
      await expect(
        f.blocklist.connect(f.lessee).getFunction("transfer")(f.stranger.address, 1n),
      ).to.be.revertedWithCustomError(f.blocklist, "MockBlocklistToken_Blocked");
      await expect(
        f.blocklist.connect(f.stranger).getFunction("transfer")(f.lessee.address, 1n),
      ).to.be.revertedWithCustomError(f.blocklist, "MockBlocklistToken_Blocked");
    });
  });

  it("EURC-like with permit: open by permit, use, withdraw, refund", async () => {
    const f = await loadDeployment();
    const endTime = (await now()) + DAY;
    const id = await openAgreement(f, {
      machineId: f.k1Machine,
      deposit: 10n * ONE,
      endTime,
      disputeWindow: HOUR,
    });
    await f.ppu.getFunction("record")([
      signed(f, reading(id, f.k1Machine, 4_000n, await now()), f.k1Key),
    ]);
    await expect(f.ppu.connect(f.payout).getFunction("settle")([id])).to.changeTokenBalances(
      ethers,
      f.eurc,
      [f.payout],
      [ONE],
    );
    await networkHelpers.time.increaseTo(endTime + HOUR + 1n);
    await expect(f.ppu.getFunction("closeAgreement")(id)).to.changeTokenBalances(
      ethers,
      f.eurc,
      [f.lessee],
      [9n * ONE],
    );
  });

  it("USDT-style (no return values): open, top up, settle, refund all work", async () => {
    const f = await loadDeployment();
    const { id: machine, key } = await machineFor(f, "usdt-press", f.usdt);
    const endTime = (await now()) + DAY;
    const id = await openAgreement(
      f,
      { machineId: machine, deposit: 10n * ONE, endTime, disputeWindow: HOUR },
      f.lessee,
      f.usdt,
    );
    expect((await f.ppu.getAgreement(id)).escrow).to.equal(10n * ONE);
    // USDT refuses non-zero to non-zero approvals: the allowance was used up, so approve again.
    await f.usdt.connect(f.lessee).getFunction("approve")(f.ppuAddress, 2n * ONE);
    await f.ppu.connect(f.lessee).getFunction("topUp")(id, 2n * ONE);
    await f.ppu.getFunction("record")([signed(f, reading(id, machine, 8_000n, await now()), key)]);
    await expect(f.ppu.getFunction("settle")([id])).to.changeTokenBalances(
      ethers,
      f.usdt,
      [f.payout, f.ppu],
      [2n * ONE, -2n * ONE],
    );
    await networkHelpers.time.increaseTo(endTime + HOUR + 1n);
    await expect(f.ppu.getFunction("closeAgreement")(id)).to.changeTokenBalances(
      ethers,
      f.usdt,
      [f.lessee],
      [10n * ONE],
    );
  });

  it("fee-on-transfer: opening an agreement is refused with a clear error", async () => {
    const f = await loadDeployment();
    const { id: machine } = await machineFor(f, "fee-press", f.feeToken);
    const params = await openParams({ machineId: machine, deposit: 10n * ONE });
    await f.feeToken.connect(f.lessee).getFunction("approve")(f.ppuAddress, params.deposit);
    await expect(f.ppu.connect(f.lessee).getFunction("openAgreement")(params))
      .to.be.revertedWithCustomError(f.ppu, "PayPerUse_FeeOnTransferToken")
      .withArgs(await f.feeToken.getAddress(), 10n * ONE, 10n * ONE - ONE / 10n);
  });

  it("fee-on-transfer: a token that starts taking fees later is refused at top-up", async () => {
    const f = await loadDeployment();
    await f.feeToken.connect(f.admin).getFunction("setFee")(0n);
    const { id: machine } = await machineFor(f, "fee-press-later", f.feeToken);
    const id = await openAgreement(f, { machineId: machine, deposit: ONE }, f.lessee, f.feeToken);
    await f.feeToken.connect(f.admin).getFunction("setFee")(50n);
    await f.feeToken.connect(f.lessee).getFunction("approve")(f.ppuAddress, ONE);
    await expect(
      f.ppu.connect(f.lessee).getFunction("topUp")(id, ONE),
    ).to.be.revertedWithCustomError(f.ppu, "PayPerUse_FeeOnTransferToken");
  });

  it("blocklist: a blocked payee does not block other payees in settle; its earnings stay claimable", async () => {
    const f = await loadDeployment();
    const blocked = await machineFor(
      f,
      "blocked-owner-press",
      f.blocklist,
      f.owner,
      f.owner.address,
    );
    const fine = await machineFor(f, "fine-owner-press", f.blocklist, f.owner2, f.owner2.address);
    const a = await openAgreement(f, { machineId: blocked.id }, f.lessee, f.blocklist);
    const b = await openAgreement(f, { machineId: fine.id }, f.lessee2, f.blocklist);
    const at = await now();
    await f.ppu.getFunction("record")([
      signed(f, reading(a, blocked.id, 4_000n, at), blocked.key),
      signed(f, reading(b, fine.id, 8_000n, at), fine.key),
    ]);
    const token = (await f.blocklist.getAddress()) as Hex;
    await f.blocklist.connect(f.admin).getFunction("setBlocked")(f.owner.address, true);

    const tx = f.ppu.connect(f.stranger).getFunction("settle")([a, b]);
    await expect(tx).to.emit(f.ppu, "PayoutFailed").withArgs(f.owner.address, token, ONE);
    await expect(tx)
      .to.emit(f.ppu, "EarningsPaid")
      .withArgs(f.owner2.address, token, 2n * ONE);
    await expect(tx).to.changeTokenBalances(
      ethers,
      f.blocklist,
      [f.owner, f.owner2],
      [0n, 2n * ONE],
    );
    expect(await f.ppu.earnings(f.owner.address, token)).to.equal(ONE);

    // Once unblocked, the owner withdraws what it earned.
    await f.blocklist.connect(f.admin).getFunction("setBlocked")(f.owner.address, false);
    await expect(f.ppu.connect(f.owner).getFunction("withdraw")(token)).to.changeTokenBalances(
      ethers,
      f.blocklist,
      [f.owner],
      [ONE],
    );
  });
  it("blocklist: a blocked lessee's agreement still closes; the refund stays withdrawable", async () => {
    const f = await loadDeployment();
    const press = await machineFor(f, "lessee-blocked-press", f.blocklist);
    const endTime = (await now()) + DAY;
    const id = await openAgreement(
      f,
      { machineId: press.id, deposit: 10n * ONE, endTime, disputeWindow: HOUR },
      f.lessee,
      f.blocklist,
    );
    await f.ppu.getFunction("record")([
      signed(f, reading(id, press.id, 4_000n, await now()), press.key),
    ]);
    const token = (await f.blocklist.getAddress()) as Hex;
    await f.blocklist.connect(f.admin).getFunction("setBlocked")(f.lessee.address, true);
    await networkHelpers.time.increaseTo(endTime + HOUR + 1n);
    const tx = f.ppu.connect(f.stranger).getFunction("closeAgreement")(id);
    await expect(tx)
      .to.emit(f.ppu, "AgreementClosed")
      .withArgs(id, 9n * ONE, ONE);
    await expect(tx)
      .to.emit(f.ppu, "PayoutFailed")
      .withArgs(f.lessee.address, token, 9n * ONE);
    expect(await f.ppu.earnings(f.lessee.address, token)).to.equal(9n * ONE);
    await f.blocklist.connect(f.admin).getFunction("setBlocked")(f.lessee.address, false);
    await expect(f.ppu.connect(f.lessee).getFunction("withdraw")(token)).to.changeTokenBalances(
      ethers,
      f.blocklist,
      [f.lessee],
      [9n * ONE],
    );
  });

  it("a token answering false on payout: settle reports PayoutFailed and keeps the earnings", async () => {
    const f = await loadDeployment();
    const hostile = (await ethers.deployContract("MockHostileToken")) as unknown as Contract;
    expect(await hostile.decimals()).to.equal(6n);
    await hostile.getFunction("mint")(f.lessee.address, 10n * ONE);
    const { id: machine, key } = await machineFor(f, "false-press", hostile);
    const id = await openAgreement(
      f,
      { machineId: machine, deposit: 10n * ONE },
      f.lessee,
      hostile,
    );
    await f.ppu.getFunction("record")([signed(f, reading(id, machine, 4_000n, await now()), key)]);
    await hostile.getFunction("setMode")(1, ethers.ZeroAddress, "0x"); // ReturnFalse
    const token = await hostile.getAddress();
    await expect(f.ppu.getFunction("settle")([id]))
      .to.emit(f.ppu, "PayoutFailed")
      .withArgs(f.payout.address, token, ONE);
    expect(await f.ppu.earnings(f.payout.address, token)).to.equal(ONE);
    await hostile.getFunction("setMode")(0, ethers.ZeroAddress, "0x"); // Normal
    await expect(f.ppu.connect(f.payout).getFunction("withdraw")(token)).to.changeTokenBalances(
      ethers,
      hostile,
      [f.payout],
      [ONE],
    );
  });
});
