/**
 * The Ignition modules in deploy/ deploy a working suite with the given parameters.
 */
import { expect } from "chai";
import { network } from "hardhat";
import LocalModule from "../../deploy/modules/Local.ts";
import PayPerUseModule from "../../deploy/modules/PayPerUse.ts";

describe("deployment modules", function () {
  it("deploys PayPerUse with the admin, bank, oracle set and lead time it was given", async () => {
    const { ethers, ignition } = await network.create();
    const [deployer, , , admin, bank, signerA, signerB] = await ethers.getSigners();
    const { payPerUse } = await ignition.deploy(PayPerUseModule, {
      parameters: {
        PayPerUse: {
          admin: admin.address,
          bank: bank.address,
          oracleSigners: [signerA.address, signerB.address],
          threshold: 2,
          debitLeadTime: 3 * 86_400,
        },
      },
    });
    const [signers, threshold] = await payPerUse.getOracleSigners();
    expect(signers).to.deep.equal([signerA.address, signerB.address]);
    expect(threshold).to.equal(2n);
    expect(await payPerUse.DEBIT_LEAD_TIME()).to.equal(3n * 86_400n);
    expect(await payPerUse.hasRole(await payPerUse.DEFAULT_ADMIN_ROLE(), admin.address)).to.equal(
      true,
    );
    expect(
      await payPerUse.hasRole(await payPerUse.DEFAULT_ADMIN_ROLE(), deployer.address),
    ).to.equal(false);
    expect(await payPerUse.hasRole(await payPerUse.BANK_ROLE(), bank.address)).to.equal(true);
  });

  it("the local module adds an EURC-like token with six decimals", async () => {
    const { ignition } = await network.create();
    const { payPerUse, token } = await ignition.deploy(LocalModule);
    expect(await token.decimals()).to.equal(6n);
    expect(await token.symbol()).to.equal("EURC");
    expect(await payPerUse.agreementCount()).to.equal(0n);
  });
});
