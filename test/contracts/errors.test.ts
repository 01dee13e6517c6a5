/**
 * Every custom error PayPerUse can revert with, each provoked through the public API with the
 * values it carries. The last test reads the error list from the compiled ABI and fails when
 * an error has no test here.
 */
import { expect } from "chai";
import type { Contract } from "ethers";
import {
  attest,
  DAY,
  deviceKeyOf,
  ethers,
  HOUR,
  KeyType,
  loadDeployment,
  machineIdOf,
  networkHelpers,
  now,
  ONE,
  openAgreement,
  openParams,
  p256Key,
  reading,
  reasonCode,
  secpKey,
  signed,
  tariff,
  TrustMode,
  type Fixture,
} from "./fixtures.ts";
import type { Hex } from "viem";

/**
 * Errors in the ABI that no call can raise: OpenZeppelin's ShortStrings errors come with the
 * EIP-712 base, whose name and version ("PayPerUse", "1") are constants short enough never to
 * trigger them.
 */
const UNREACHABLE = new Set(["InvalidShortString", "StringTooLong"]);

const tested = new Set<string>();

/** Expects a revert with `name` from PayPerUse (and its arguments when given), and records it. */
async function expectError(f: Fixture, call: Promise<unknown>, name: string, args?: unknown[]) {
  tested.add(name);
  const assertion = expect(call).to.be.revertedWithCustomError(f.ppu, name);
  if (args === undefined) await assertion;
  else await assertion.withArgs(...args);
}

const MANDATE = ethers.id("mandate") as Hex;
const U96 = 1n << 96n;

async function inDebtWithDebit(f: Fixture): Promise<bigint> {
  const id = await openAgreement(f, { machineId: f.k1Machine, deposit: ONE, mandateRef: MANDATE });
  await f.ppu.getFunction("record")([
    signed(f, reading(id, f.k1Machine, 12_000n, await now()), f.k1Key),
  ]);
  await f.ppu.getFunction("settle")([id]);
  return id;
}

describe("PayPerUse: every custom error", function () {
  describe("machine registry", () => {
    it("PayPerUse_ZeroAddress: zero payout, new owner, token or admin", async () => {
      const f = await loadDeployment();
      const id = machineIdOf("zero");
      const key = deviceKeyOf(secpKey("zero"));
      const owner = f.ppu.connect(f.owner);
      await expectError(
        f,
        owner.getFunction("registerMachine")(
          id,
          ethers.ZeroAddress,
          TrustMode.DeviceSigned,
          0n,
          key,
        ),
        "PayPerUse_ZeroAddress",
      );
      await expectError(
        f,
        owner.getFunction("setPayout")(f.k1Machine, ethers.ZeroAddress),
        "PayPerUse_ZeroAddress",
      );
      await expectError(
        f,
        owner.getFunction("transferMachine")(f.k1Machine, ethers.ZeroAddress),
        "PayPerUse_ZeroAddress",
      );
      await expectError(
        f,
        owner.getFunction("publishTariff")(f.k1Machine, tariff({ token: ethers.ZeroAddress })),
        "PayPerUse_ZeroAddress",
      );
      await expectError(
        f,
        ethers.deployContract("PayPerUse", [ethers.ZeroAddress, f.bank.address, [], 0, DAY]),
        "PayPerUse_ZeroAddress",
      );
    });

    it("PayPerUse_MachineExists", async () => {
      const f = await loadDeployment();
      await expectError(
        f,
        f.ppu.connect(f.owner2).getFunction("registerMachine")(
          f.k1Machine,
          f.owner2.address,
          TrustMode.DeviceSigned,
          0n,
          deviceKeyOf(secpKey("x")),
        ),
        "PayPerUse_MachineExists",
        [f.k1Machine],
      );
    });

    it("PayPerUse_UnknownMachine", async () => {
      const f = await loadDeployment();
      const unknown = machineIdOf("unknown");
      await expectError(
        f,
        f.ppu.connect(f.owner).getFunction("setPayout")(unknown, f.owner.address),
        "PayPerUse_UnknownMachine",
        [unknown],
      );
    });

    it("PayPerUse_NotMachineOwner", async () => {
      const f = await loadDeployment();
      await expectError(
        f,
        f.ppu.connect(f.stranger).getFunction("revokeDeviceKey")(f.k1Machine),
        "PayPerUse_NotMachineOwner",
        [f.k1Machine, f.stranger.address],
      );
    });

    it("PayPerUse_InvalidDeviceKey: missing, oversized, non-zero y, off-curve", async () => {
      const f = await loadDeployment();
      const id = machineIdOf("bad-key");
      const register = (key: { keyType: number; x: string; y: string }) =>
        f.ppu.connect(f.owner).getFunction("registerMachine")(
          id,
          f.owner.address,
          TrustMode.DeviceSigned,
          0n,
          key,
        );
      await expectError(f, register(deviceKeyOf()), "PayPerUse_InvalidDeviceKey", [
        id,
        KeyType.None,
      ]);
      const k1 = deviceKeyOf(secpKey("bad-key"));
      await expectError(f, register({ ...k1, x: ethers.ZeroHash }), "PayPerUse_InvalidDeviceKey", [
        id,
        KeyType.Secp256k1,
      ]);
      await expectError(
        f,
        register({ ...k1, x: ethers.toBeHex(ethers.MaxUint256, 32) }),
        "PayPerUse_InvalidDeviceKey",
      );
      await expectError(f, register({ ...k1, y: ethers.id("y") }), "PayPerUse_InvalidDeviceKey");
      const p = deviceKeyOf(p256Key());
      await expectError(
        f,
        register({ ...p, y: ethers.id("not on the curve") }),
        "PayPerUse_InvalidDeviceKey",
        [id, KeyType.P256],
      );
      await expectError(
        f,
        f.ppu.connect(f.owner).getFunction("rotateDeviceKey")(f.k1Machine, deviceKeyOf()),
        "PayPerUse_InvalidDeviceKey",
        [f.k1Machine, KeyType.None],
      );
    });

    it("PayPerUse_InvalidThreshold: zero, or above the number of signers", async () => {
      const f = await loadDeployment();
      const admin = f.ppu.connect(f.admin);
      await expectError(
        f,
        admin.getFunction("setOracleSigners")([f.stranger.address], 0),
        "PayPerUse_InvalidThreshold",
        [0, 1],
      );
      await expectError(
        f,
        admin.getFunction("setOracleSigners")([f.stranger.address], 2),
        "PayPerUse_InvalidThreshold",
        [2, 1],
      );
    });

    it("PayPerUse_InvalidOracleSigner: zero or listed twice", async () => {
      const f = await loadDeployment();
      const admin = f.ppu.connect(f.admin);
      await expectError(
        f,
        admin.getFunction("setOracleSigners")([f.stranger.address, f.stranger.address], 1),
        "PayPerUse_InvalidOracleSigner",
        [f.stranger.address],
      );
      await expectError(
        f,
        admin.getFunction("setOracleSigners")([ethers.ZeroAddress], 1),
        "PayPerUse_InvalidOracleSigner",
        [ethers.ZeroAddress],
      );
    });

    it("AccessControlUnauthorizedAccount: signer set by a non-admin, debits by a non-bank", async () => {
      const f = await loadDeployment();
      tested.add("AccessControlUnauthorizedAccount");
      await expect(
        f.ppu.connect(f.stranger).getFunction("setOracleSigners")([f.stranger.address], 1),
      )
        .to.be.revertedWithCustomError(f.ppu, "AccessControlUnauthorizedAccount")
        .withArgs(f.stranger.address, ethers.ZeroHash);
      const bankRole = await f.ppu.BANK_ROLE();
      await expect(f.ppu.connect(f.stranger).getFunction("confirmDirectDebit")(1n))
        .to.be.revertedWithCustomError(f.ppu, "AccessControlUnauthorizedAccount")
        .withArgs(f.stranger.address, bankRole);
      await expect(
        f.ppu.connect(f.owner).getFunction("reportDirectDebitReturn")(1n, reasonCode("AC04")),
      )
        .to.be.revertedWithCustomError(f.ppu, "AccessControlUnauthorizedAccount")
        .withArgs(f.owner.address, bankRole);
    });

    it("AccessControlBadConfirmation: renouncing a role for someone else", async () => {
      const f = await loadDeployment();
      const bankRole = await f.ppu.BANK_ROLE();
      await expectError(
        f,
        f.ppu.connect(f.stranger).getFunction("renounceRole")(bankRole, f.bank.address),
        "AccessControlBadConfirmation",
      );
    });
  });

  describe("tariffs", () => {
    it("PayPerUse_ZeroUnitScale", async () => {
      const f = await loadDeployment();
      await expectError(
        f,
        f.ppu.connect(f.owner).getFunction("publishTariff")(
          f.k1Machine,
          tariff({ token: await f.eurc.getAddress(), unitScale: 0n }),
        ),
        "PayPerUse_ZeroUnitScale",
      );
    });

    it("PayPerUse_TiersNotAscending: a tier at zero, or not above the previous one", async () => {
      const f = await loadDeployment();
      const token = await f.eurc.getAddress();
      const publish = (tiers: { fromUnits: bigint; price: bigint }[]) =>
        f.ppu.connect(f.owner).getFunction("publishTariff")(f.k1Machine, tariff({ token, tiers }));
      await expectError(f, publish([{ fromUnits: 0n, price: 1n }]), "PayPerUse_TiersNotAscending", [
        0n,
        0n,
      ]);
      await expectError(
        f,
        publish([
          { fromUnits: 100n, price: 1n },
          { fromUnits: 100n, price: 1n },
        ]),
        "PayPerUse_TiersNotAscending",
        [1n, 100n],
      );
    });

    it("PayPerUse_BaseFeeWithoutPeriod", async () => {
      const f = await loadDeployment();
      await expectError(
        f,
        f.ppu.connect(f.owner).getFunction("publishTariff")(
          f.k1Machine,
          tariff({ token: await f.eurc.getAddress(), baseFee: 5n }),
        ),
        "PayPerUse_BaseFeeWithoutPeriod",
        [5n],
      );
    });

    it("PayPerUse_ValueTooLarge: price, unit scale, fees, tier price, deposit", async () => {
      const f = await loadDeployment();
      const token = await f.eurc.getAddress();
      const publish = (input: Parameters<typeof tariff>[0]) =>
        f.ppu.connect(f.owner).getFunction("publishTariff")(f.k1Machine, tariff(input));
      await expectError(f, publish({ token, price: U96 }), "PayPerUse_ValueTooLarge", [U96]);
      await expectError(f, publish({ token, unitScale: 1n << 64n }), "PayPerUse_ValueTooLarge", [
        1n << 64n,
      ]);
      await expectError(
        f,
        publish({ token, baseFee: U96, period: DAY }),
        "PayPerUse_ValueTooLarge",
        [U96],
      );
      await expectError(f, publish({ token, minimumCharge: U96 }), "PayPerUse_ValueTooLarge", [
        U96,
      ]);
      await expectError(
        f,
        publish({ token, tiers: [{ fromUnits: 1n, price: U96 }] }),
        "PayPerUse_ValueTooLarge",
        [U96],
      );
      // An end time or close time beyond 2^40 seconds does not fit the agreement's storage.
      const far = 1n << 40n;
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("openAgreement")(
          await openParams({ machineId: f.k1Machine, endTime: far }),
        ),
        "PayPerUse_ValueTooLarge",
        [far],
      );
      const endTime = (await now()) + DAY;
      const window = (1n << 64n) - 1n;
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("openAgreement")(
          await openParams({ machineId: f.k1Machine, endTime, disputeWindow: window }),
        ),
        "PayPerUse_ValueTooLarge",
        [endTime + window],
      );
      // A deposit above 2^96 - 1 does not fit the escrow.
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("openAgreement")(
          await openParams({ machineId: f.k1Machine, deposit: U96 }),
        ),
        "PayPerUse_ValueTooLarge",
        [U96],
      );
    });

    it("PayPerUse_UnknownTariff: version 0 and a version not yet published", async () => {
      const f = await loadDeployment();
      await expectError(f, f.ppu.getTariff(f.k1Machine, 0), "PayPerUse_UnknownTariff", [
        f.k1Machine,
        0,
      ]);
      await expectError(f, f.ppu.costOf(f.k1Machine, 2, 1n), "PayPerUse_UnknownTariff", [
        f.k1Machine,
        2,
      ]);
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("openAgreement")(
          await openParams({ machineId: f.k1Machine, tariffVersion: 9 }),
        ),
        "PayPerUse_UnknownTariff",
        [f.k1Machine, 9],
      );
    });
  });

  describe("agreements", () => {
    it("PayPerUse_EndTimeInPast", async () => {
      const f = await loadDeployment();
      const endTime = await now();
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("openAgreement")(
          await openParams({ machineId: f.k1Machine, endTime }),
        ),
        "PayPerUse_EndTimeInPast",
      );
    });

    it("PayPerUse_CapWithoutPeriod", async () => {
      const f = await loadDeployment();
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("openAgreement")(
          await openParams({ machineId: f.k1Machine, spendingCap: ONE }),
        ),
        "PayPerUse_CapWithoutPeriod",
        [ONE],
      );
    });

    it("PayPerUse_FeeOnTransferToken", async () => {
      const f = await loadDeployment();
      const machine = machineIdOf("fee");
      await f.ppu.connect(f.owner).getFunction("registerMachine")(
        machine,
        f.owner.address,
        TrustMode.OracleAttested,
        0n,
        deviceKeyOf(),
      );
      const token = await f.feeToken.getAddress();
      await f.ppu.connect(f.owner).getFunction("publishTariff")(machine, tariff({ token }));
      await f.feeToken.connect(f.lessee).getFunction("approve")(f.ppuAddress, 1_000n);
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("openAgreement")(
          await openParams({ machineId: machine, deposit: 1_000n }),
        ),
        "PayPerUse_FeeOnTransferToken",
        [token, 1_000n, 990n],
      );
    });

    it("PayPerUse_UnknownAgreement: top-up, settle, debt payment, mandate", async () => {
      const f = await loadDeployment();
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("topUp")(42n, ONE),
        "PayPerUse_UnknownAgreement",
        [42n],
      );
      await expectError(f, f.ppu.getFunction("settle")([42n]), "PayPerUse_UnknownAgreement", [42n]);
      await expectError(f, f.ppu.getFunction("payDebt")(42n, ONE), "PayPerUse_UnknownAgreement", [
        42n,
      ]);
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("setMandate")(42n, MANDATE),
        "PayPerUse_UnknownAgreement",
        [42n],
      );
    });

    it("PayPerUse_NotLessee", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      await expectError(
        f,
        f.ppu.connect(f.owner).getFunction("setMandate")(id, MANDATE),
        "PayPerUse_NotLessee",
        [id, f.owner.address],
      );
    });

    it("PayPerUse_NotLesseeOrOwner", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      await expectError(
        f,
        f.ppu.connect(f.stranger).getFunction("endAgreement")(id),
        "PayPerUse_NotLesseeOrOwner",
        [id, f.stranger.address],
      );
    });

    it("PayPerUse_AgreementIsClosed: no top-up, mandate, end or second close", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, {
        machineId: f.k1Machine,
        endTime: (await now()) + HOUR,
        disputeWindow: 0n,
      });
      await networkHelpers.time.increase(2n * HOUR);
      await f.ppu.getFunction("closeAgreement")(id);
      await f.eurc.connect(f.lessee).getFunction("approve")(f.ppuAddress, ONE);
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("topUp")(id, ONE),
        "PayPerUse_AgreementIsClosed",
        [id],
      );
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("setMandate")(id, MANDATE),
        "PayPerUse_AgreementIsClosed",
        [id],
      );
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("endAgreement")(id),
        "PayPerUse_AgreementIsClosed",
        [id],
      );
      await expectError(f, f.ppu.getFunction("closeAgreement")(id), "PayPerUse_AgreementIsClosed", [
        id,
      ]);
    });

    it("PayPerUse_DisputeWindowOpen carries when the agreement may close", async () => {
      const f = await loadDeployment();
      const endTime = (await now()) + DAY;
      const id = await openAgreement(f, { machineId: f.k1Machine, endTime, disputeWindow: HOUR });
      await expectError(f, f.ppu.getFunction("closeAgreement")(id), "PayPerUse_DisputeWindowOpen", [
        id,
        endTime + HOUR,
      ]);
    });

    it("PayPerUse_ZeroAmount: top-up and debt payment of zero", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("topUp")(id, 0n),
        "PayPerUse_ZeroAmount",
      );
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("payDebt")(id, 0n),
        "PayPerUse_ZeroAmount",
      );
    });

    it("PayPerUse_AmountAboveDebt", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.k1Machine });
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("payDebt")(id, 1n),
        "PayPerUse_AmountAboveDebt",
        [id, 1n, 0n],
      );
    });
  });

  describe("metering", () => {
    it("PayPerUse_EmptyBatch: record and recordAttested", async () => {
      const f = await loadDeployment();
      await expectError(f, f.ppu.getFunction("record")([]), "PayPerUse_EmptyBatch");
      await expectError(f, f.ppu.getFunction("recordAttested")([], []), "PayPerUse_EmptyBatch");
    });

    it("PayPerUse_InsufficientAttestations: fewer than k signatures", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.oracleMachine });
      const readings = [reading(id, f.oracleMachine, 5n, await now())];
      await expectError(
        f,
        f.ppu.getFunction("recordAttested")(readings, attest(f, readings, [f.oracleKeys[0]!])),
        "PayPerUse_InsufficientAttestations",
        [1n, 2n],
      );
    });

    it("PayPerUse_InvalidAttestation: unregistered signer, descending order, repeated signer, other batch", async () => {
      const f = await loadDeployment();
      const id = await openAgreement(f, { machineId: f.oracleMachine });
      const readings = [reading(id, f.oracleMachine, 5n, await now())];
      const record = (signatures: string[]) =>
        f.ppu.getFunction("recordAttested")(readings, signatures);
      const sorted = attest(f, readings, f.oracleKeys);
      // Descending order.
      await expectError(f, record([sorted[1]!, sorted[0]!]), "PayPerUse_InvalidAttestation");
      // The same signer twice.
      await expectError(f, record([sorted[0]!, sorted[0]!]), "PayPerUse_InvalidAttestation");
      // A signer that is not registered.
      const outsider = secpKey("outsider");
      await expectError(
        f,
        record([sorted[0]!, attest(f, readings, [outsider])[0]!]),
        "PayPerUse_InvalidAttestation",
        [1n, ethers.computeAddress(outsider.privateKey)],
      );
      // Signatures over another batch recover to other addresses.
      const other = [reading(id, f.oracleMachine, 6n, await now())];
      await expectError(f, record(attest(f, other)), "PayPerUse_InvalidAttestation");
      // A malformed signature.
      await expectError(f, record(["0x1234", sorted[1]!]), "PayPerUse_InvalidAttestation", [
        0n,
        ethers.ZeroAddress,
      ]);
    });
  });

  describe("settlement", () => {
    it("PayPerUse_NothingToWithdraw", async () => {
      const f = await loadDeployment();
      const token = await f.eurc.getAddress();
      await expectError(
        f,
        f.ppu.connect(f.payout).getFunction("withdraw")(token),
        "PayPerUse_NothingToWithdraw",
        [f.payout.address, token],
      );
    });

    it("PayPerUse_UnknownDebit: confirm and return", async () => {
      const f = await loadDeployment();
      await expectError(
        f,
        f.ppu.connect(f.bank).getFunction("confirmDirectDebit")(7n),
        "PayPerUse_UnknownDebit",
        [7n],
      );
      await expectError(
        f,
        f.ppu.connect(f.bank).getFunction("reportDirectDebitReturn")(7n, reasonCode("AC04")),
        "PayPerUse_UnknownDebit",
        [7n],
      );
    });

    it("PayPerUse_DebitNotOpen: confirming twice, confirming or returning a returned debit", async () => {
      const f = await loadDeployment();
      await inDebtWithDebit(f);
      const bank = f.ppu.connect(f.bank);
      await f.eurc.connect(f.bank).getFunction("approve")(f.ppuAddress, 10n * ONE);
      await bank.getFunction("confirmDirectDebit")(1n);
      await expectError(f, bank.getFunction("confirmDirectDebit")(1n), "PayPerUse_DebitNotOpen", [
        1n,
      ]);
      await bank.getFunction("reportDirectDebitReturn")(1n, reasonCode("MD06"));
      await expectError(f, bank.getFunction("confirmDirectDebit")(1n), "PayPerUse_DebitNotOpen", [
        1n,
      ]);
      await expectError(
        f,
        bank.getFunction("reportDirectDebitReturn")(1n, reasonCode("AC04")),
        "PayPerUse_DebitNotOpen",
        [1n],
      );
    });

    it("PayPerUse_InvalidReasonCode: lower case, punctuation, empty", async () => {
      const f = await loadDeployment();
      await inDebtWithDebit(f);
      const bank = f.ppu.connect(f.bank);
      for (const code of [reasonCode("ac04"), reasonCode("AC-4"), "0x00000000"]) {
        await expectError(
          f,
          bank.getFunction("reportDirectDebitReturn")(1n, code),
          "PayPerUse_InvalidReasonCode",
          [code],
        );
      }
    });

    it("SafeERC20FailedOperation: a token that answers false instead of reverting", async () => {
      const f = await loadDeployment();
      const { hostile, machine } = await hostileMachine(f);
      await hostile.getFunction("setMode")(1, ethers.ZeroAddress, "0x"); // ReturnFalse
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("openAgreement")(
          await openParams({ machineId: machine, deposit: ONE }),
        ),
        "SafeERC20FailedOperation",
        [await hostile.getAddress()],
      );
    });

    it("ReentrancyGuardReentrantCall: a token calling back into PayPerUse during a transfer", async () => {
      const f = await loadDeployment();
      const { hostile, machine } = await hostileMachine(f);
      const id = await openAgreement(f, { machineId: machine, deposit: ONE }, f.lessee, hostile);
      const reentry = f.ppu.interface.encodeFunctionData("topUp", [id, 1n]);
      await hostile.getFunction("setMode")(2, f.ppuAddress, reentry); // Reenter
      await hostile.connect(f.lessee).getFunction("approve")(f.ppuAddress, ONE);
      await expectError(
        f,
        f.ppu.connect(f.lessee).getFunction("topUp")(id, ONE),
        "ReentrancyGuardReentrantCall",
      );
    });
  });

  // Mocha runs a suite's own tests before its child suites: this one is a child suite, declared last.
  describe("completeness", () => {
    it("every custom error in PayPerUse's ABI has a test above", async () => {
      const f = await loadDeployment();
      const all: string[] = [];
      f.ppu.interface.forEachError((fragment) => all.push(fragment.name));
      const declared = all.filter((name) => !UNREACHABLE.has(name)).sort();
      expect(declared.length).to.be.greaterThan(25);
      const missing = declared.filter((name) => !tested.has(name));
      expect(missing, `errors without a test: ${missing.join(", ")}`).to.deep.equal([]);
      // And the exclusions must be real ABI errors, so the list cannot hide a typo.
      for (const name of UNREACHABLE) expect(all).to.include(name);
    });
  });
});

async function hostileMachine(f: Fixture): Promise<{ hostile: Contract; machine: Hex }> {
  const hostile = await ethers.deployContract("MockHostileToken");
  await hostile.getFunction("mint")(f.lessee.address, 100n * ONE);
  await hostile.connect(f.lessee).getFunction("approve")(f.ppuAddress, ONE);
  const machine = machineIdOf("hostile");
  await f.ppu.connect(f.owner).getFunction("registerMachine")(
    machine,
    f.owner.address,
    TrustMode.OracleAttested,
    0n,
    deviceKeyOf(),
  );
  await f.ppu.connect(f.owner).getFunction("publishTariff")(
    machine,
    tariff({ token: await hostile.getAddress() }),
  );
  return { hostile: hostile as unknown as Contract, machine };
}
