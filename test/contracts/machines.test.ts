/**
 * Machine registry and tariff book: registration with either key type, key rotation and
 * revocation, payout change, ownership transfer, the oracle signer set, and immutable tariff
 * versions.
 */
import { expect } from "chai";
import {
  deviceKeyOf,
  KeyType,
  loadDeployment,
  machineIdOf,
  p256Key,
  secpKey,
  tariff,
  TrustMode,
} from "./fixtures.ts";

describe("PayPerUse: machines and tariffs", function () {
  describe("registerMachine", () => {
    it("registers a secp256k1 device-signed machine and emits MachineRegistered", async () => {
      const f = await loadDeployment();
      const id = machineIdOf("new-k1");
      const key = deviceKeyOf(secpKey("new-k1"));
      await expect(
        f.ppu.connect(f.owner2).getFunction("registerMachine")(
          id,
          f.owner2.address,
          TrustMode.DeviceSigned,
          500n,
          key,
        ),
      )
        .to.emit(f.ppu, "MachineRegistered")
        .withArgs(
          id,
          f.owner2.address,
          f.owner2.address,
          TrustMode.DeviceSigned,
          KeyType.Secp256k1,
          key.x,
          key.y,
          500n,
        );
      const machine = await f.ppu.getMachine(id);
      expect(machine.owner).to.equal(f.owner2.address);
      expect(machine.payout).to.equal(f.owner2.address);
      expect(machine.trustMode).to.equal(BigInt(TrustMode.DeviceSigned));
      expect(machine.keyType).to.equal(BigInt(KeyType.Secp256k1));
      expect(machine.keyX).to.equal(key.x);
      expect(machine.maxUnitsPerHour).to.equal(500n);
      expect(machine.tariffCount).to.equal(0n);
    });

    it("registers a P-256 machine with both coordinates", async () => {
      const f = await loadDeployment();
      const machine = await f.ppu.getMachine(f.p256Machine);
      const key = deviceKeyOf(f.p256Key);
      expect(machine.keyType).to.equal(BigInt(KeyType.P256));
      expect(machine.keyX).to.equal(key.x);
      expect(machine.keyY).to.equal(key.y);
      expect(machine.keyVersion).to.equal(1n);
    });

    it("registers an oracle-attested machine without a key", async () => {
      const f = await loadDeployment();
      const machine = await f.ppu.getMachine(f.oracleMachine);
      expect(machine.trustMode).to.equal(BigInt(TrustMode.OracleAttested));
      expect(machine.keyType).to.equal(BigInt(KeyType.None));
    });
  });

  describe("keys, payout and ownership", () => {
    it("rotates a key to the other curve and bumps the key version", async () => {
      const f = await loadDeployment();
      const next = deviceKeyOf(p256Key());
      await expect(f.ppu.connect(f.owner).getFunction("rotateDeviceKey")(f.k1Machine, next))
        .to.emit(f.ppu, "DeviceKeyRotated")
        .withArgs(f.k1Machine, 2n, KeyType.P256, next.x, next.y);
      const machine = await f.ppu.getMachine(f.k1Machine);
      expect(machine.keyType).to.equal(BigInt(KeyType.P256));
      expect(machine.keyVersion).to.equal(2n);
    });

    it("revokes a key: the machine has no key until it is rotated again", async () => {
      const f = await loadDeployment();
      await expect(f.ppu.connect(f.owner).getFunction("revokeDeviceKey")(f.k1Machine))
        .to.emit(f.ppu, "DeviceKeyRevoked")
        .withArgs(f.k1Machine, 1n);
      expect((await f.ppu.getMachine(f.k1Machine)).keyType).to.equal(BigInt(KeyType.None));
      const next = deviceKeyOf(secpKey("replacement"));
      await f.ppu.connect(f.owner).getFunction("rotateDeviceKey")(f.k1Machine, next);
      const machine = await f.ppu.getMachine(f.k1Machine);
      expect(machine.keyType).to.equal(BigInt(KeyType.Secp256k1));
      expect(machine.keyX).to.equal(next.x);
    });

    it("changes the payout address", async () => {
      const f = await loadDeployment();
      await expect(f.ppu.connect(f.owner).getFunction("setPayout")(f.k1Machine, f.owner2.address))
        .to.emit(f.ppu, "PayoutChanged")
        .withArgs(f.k1Machine, f.owner2.address);
      expect((await f.ppu.getMachine(f.k1Machine)).payout).to.equal(f.owner2.address);
    });

    it("transfers a machine: the new owner manages it, the old one no longer can", async () => {
      const f = await loadDeployment();
      await expect(
        f.ppu.connect(f.owner).getFunction("transferMachine")(f.k1Machine, f.owner2.address),
      )
        .to.emit(f.ppu, "MachineTransferred")
        .withArgs(f.k1Machine, f.owner.address, f.owner2.address);
      expect((await f.ppu.getMachine(f.k1Machine)).owner).to.equal(f.owner2.address);
      await f.ppu.connect(f.owner2).getFunction("setPayout")(f.k1Machine, f.owner2.address);
      await expect(
        f.ppu.connect(f.owner).getFunction("setPayout")(f.k1Machine, f.owner.address),
      ).to.be.revertedWithCustomError(f.ppu, "PayPerUse_NotMachineOwner");
    });
  });

  describe("oracle signers", () => {
    it("the admin replaces the signer set and threshold", async () => {
      const f = await loadDeployment();
      const signers = [f.stranger.address, f.owner2.address];
      await expect(f.ppu.connect(f.admin).getFunction("setOracleSigners")(signers, 1))
        .to.emit(f.ppu, "OracleSignersChanged")
        .withArgs(signers, 1);
      const [stored, threshold] = await f.ppu.getOracleSigners();
      expect(stored).to.deep.equal(signers);
      expect(threshold).to.equal(1n);
    });

    it("reports the deployment's signers and threshold", async () => {
      const f = await loadDeployment();
      const [stored, threshold] = await f.ppu.getOracleSigners();
      expect(stored).to.deep.equal(f.oracleAddresses);
      expect(threshold).to.equal(2n);
    });
  });

  describe("tariffs", () => {
    it("publishes numbered immutable versions and emits every term", async () => {
      const f = await loadDeployment();
      const token = await f.eurc.getAddress();
      const tiers = [
        { fromUnits: 1_000n, price: 200_000n },
        { fromUnits: 5_000n, price: 150_000n },
      ];
      const params = tariff({ token, tiers, minimumCharge: 5n, baseFee: 7n, period: 3_600n });
      await expect(f.ppu.connect(f.owner).getFunction("publishTariff")(f.k1Machine, params))
        .to.emit(f.ppu, "TariffPublished")
        .withArgs(
          f.k1Machine,
          2,
          token,
          "kWh",
          params.price,
          params.unitScale,
          5n,
          7n,
          3_600n,
          tiers.map((t) => [t.fromUnits, t.price]),
        );
      const v1 = await f.ppu.getTariff(f.k1Machine, 1);
      const v2 = await f.ppu.getTariff(f.k1Machine, 2);
      expect(v1.tiers).to.have.length(0);
      expect(v2.tiers).to.have.length(2);
      expect(v2.baseFee).to.equal(7n);
      expect((await f.ppu.getMachine(f.k1Machine)).tariffCount).to.equal(2n);
    });

    it("prices volume tiers band by band (costOf)", async () => {
      const f = await loadDeployment();
      const tiers = [
        { fromUnits: 1_000n, price: 80n },
        { fromUnits: 5_000n, price: 50n },
      ];
      await f.ppu.connect(f.owner).getFunction("publishTariff")(
        f.k1Machine,
        tariff({ token: await f.eurc.getAddress(), price: 100n, unitScale: 1n, tiers }),
      );
      expect(await f.ppu.costOf(f.k1Machine, 2, 0n)).to.equal(0n);
      expect(await f.ppu.costOf(f.k1Machine, 2, 999n)).to.equal(99_900n);
      expect(await f.ppu.costOf(f.k1Machine, 2, 1_500n)).to.equal(100_000n + 500n * 80n);
      expect(await f.ppu.costOf(f.k1Machine, 2, 6_000n)).to.equal(
        100_000n + 4_000n * 80n + 1_000n * 50n,
      );
      // Rational price: 0.25 token per kWh metered in Wh rounds down only once, on the total.
      expect(await f.ppu.costOf(f.k1Machine, 1, 3n)).to.equal(750n);
    });
  });
});
