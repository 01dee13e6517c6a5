/**
 * A P-256 reading signed with a key made by Node's crypto verifies on-chain through the
 * EIP-7951 precompile (default network, hardfork osaka) and through OpenZeppelin's Solidity
 * fallback (a network on hardfork prague, which has no precompile at 0x100).
 */
import { expect } from "chai";
import { network } from "hardhat";
import { bytesToHex, p256MessageHash, readingDigest } from "../../services/shared/eip712.ts";
import { signReading } from "../../services/shared/signatures.ts";
import {
  deployOn,
  deviceKeyOf,
  ethers,
  networkHelpers,
  now,
  ONE,
  openAgreement,
  p256Key,
  PRICE,
  reading,
  signed,
  SkipReason,
  UNIT_SCALE,
  type Fixture,
} from "./fixtures.ts";
import type { Hex } from "viem";

const prague = await network.create({ override: { hardfork: "prague" } });

async function deployPragueSuite(): Promise<Fixture> {
  return deployOn(prague.ethers);
}

function split(signature: Hex): { r: Hex; s: Hex } {
  return { r: `0x${signature.slice(2, 66)}`, s: `0x${signature.slice(66, 130)}` };
}

describe("P-256 device keys made by Node's crypto", function () {
  const key = p256Key();
  const domain = {
    chainId: 31337n,
    verifyingContract: "0x000000000000000000000000000000000000dEaD" as Hex,
  };
  const r0 = reading(1n, ethers.id("m") as Hex, 42n, 1_700_000_000n);
  const message = bytesToHex(p256MessageHash(readingDigest(domain, r0)));
  const signature = signReading(domain, r0, key);
  const { r, s } = split(signature);
  const { x, y } = deviceKeyOf(key);

  async function harnesses() {
    const osakaHarness = await ethers.deployContract("P256Harness");
    const pragueHarness = await prague.ethers.deployContract("P256Harness");
    return { osakaHarness, pragueHarness };
  }

  it("the default network (osaka) has the EIP-7951 precompile and it accepts the signature", async () => {
    const { osakaHarness } = await networkHelpers.loadFixture(harnesses);
    expect(await osakaHarness.hasPrecompile()).to.equal(true);
    expect(await osakaHarness.verifyNative(message, r, s, x, y)).to.equal(true);
    expect(await osakaHarness.verify(message, r, s, x, y)).to.equal(true);
  });

  it("a prague network has no precompile; the Solidity fallback accepts the same signature", async () => {
    const { pragueHarness } = await harnesses();
    expect(await pragueHarness.hasPrecompile()).to.equal(false);
    await expect(pragueHarness.verifyNative(message, r, s, x, y)).to.be.revertedWithCustomError(
      pragueHarness,
      "MissingPrecompile",
    );
    expect(await pragueHarness.verifySolidity(message, r, s, x, y)).to.equal(true);
    expect(await pragueHarness.verify(message, r, s, x, y)).to.equal(true);
  });

  it("both paths refuse a signature over another reading", async () => {
    const { osakaHarness, pragueHarness } = await networkHelpers.loadFixture(harnesses);
    const other = bytesToHex(
      p256MessageHash(readingDigest(domain, { ...r0, cumulativeUnits: 43n })),
    );
    expect(await osakaHarness.verifyNative(other, r, s, x, y)).to.equal(false);
    expect(await pragueHarness.verifySolidity(other, r, s, x, y)).to.equal(false);
  });

  for (const [label, chain] of [
    ["precompile (osaka)", "osaka"],
    ["Solidity fallback (prague)", "prague"],
  ] as const) {
    it(`PayPerUse records a P-256 device-signed reading through the ${label}`, async () => {
      const f = chain === "osaka" ? await deployOn(ethers) : await deployPragueSuite();
      const id = await openAgreement(f, { machineId: f.p256Machine });
      const at = await now(f.ethers);
      const good = signed(f, reading(id, f.p256Machine, 1_000n, at), f.p256Key);
      const tx = await f.ppu.getFunction("record")([good]);
      await expect(tx)
        .to.emit(f.ppu, "UsageRecorded")
        .withArgs(
          id,
          f.p256Machine,
          1_000n,
          1_000n,
          (1_000n * PRICE) / UNIT_SCALE,
          100n * ONE - 250_000n,
          0n,
          at,
        );
      const receipt = await tx.wait();
      // The fallback does the curve arithmetic in the EVM: it costs far more gas than the
      // precompile, which proves which path ran.
      if (chain === "osaka") expect(receipt!.gasUsed).to.be.lessThan(150_000n);
      else expect(receipt!.gasUsed).to.be.greaterThan(200_000n);

      // A forged signature (another key) is skipped on both paths.
      const forged = signed(f, reading(id, f.p256Machine, 2_000n, at), p256Key());
      await expect(f.ppu.getFunction("record")([forged]))
        .to.emit(f.ppu, "ReadingSkipped")
        .withArgs(id, f.p256Machine, SkipReason.BadSignature, 2_000n);
    });
  }
});
