/**
 * The local suite: PayPerUse plus an EURC-like token (6 decimals, EIP-2612 permit) to settle in.
 *
 *   npx hardhat ignition deploy deploy/modules/Local.ts --parameters deploy/parameters/local.json
 */
import { buildModule } from "@nomicfoundation/hardhat-ignition/modules";
import PayPerUseModule from "./PayPerUse.ts";

export default buildModule("Local", (m) => {
  const { payPerUse } = m.useModule(PayPerUseModule);
  const token = m.contract("MockEURC", [m.getAccount(0)]);
  return { payPerUse, token };
});
