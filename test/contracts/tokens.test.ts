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
});
