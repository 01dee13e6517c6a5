/**
 * Deploys the PayPerUse contract to any chain.
 *
 *   npx hardhat ignition deploy deploy/modules/PayPerUse.ts --network <name> --parameters deploy/parameters/<chain>.json
 *
 * Parameters (module "PayPerUse"):
 *   admin          receives DEFAULT_ADMIN_ROLE (oracle signer set, roles); default: the deploying account
 *   bank           receives BANK_ROLE (direct-debit confirmations and returns); default: account 1
 *   oracleSigners  addresses that attest batches for machines without keys
 *   threshold      signatures needed per attested batch (k of n)
 *   debitLeadTime  seconds between a direct-debit request and its earliest due date (default two days)
 *
 * The settlement token is not a deployment parameter: each tariff names its ERC-20.
 */
import { buildModule } from "@nomicfoundation/hardhat-ignition/modules";

export default buildModule("PayPerUse", (m) => {
  const admin = m.getParameter("admin", m.getAccount(0));
  const bank = m.getParameter("bank", m.getAccount(1));
  const oracleSigners = m.getParameter<string[]>("oracleSigners", [
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
  ]);
  const threshold = m.getParameter("threshold", 1);
  const debitLeadTime = m.getParameter("debitLeadTime", 2 * 24 * 3600);

  const payPerUse = m.contract("PayPerUse", [admin, bank, oracleSigners, threshold, debitLeadTime]);
  return { payPerUse };
});
