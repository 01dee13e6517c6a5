import { createRequire } from "node:module";
import { defineConfig } from "hardhat/config";
import hardhatEthers from "@nomicfoundation/hardhat-ethers";
import hardhatEthersChaiMatchers from "@nomicfoundation/hardhat-ethers-chai-matchers";
import hardhatMocha from "@nomicfoundation/hardhat-mocha";
import hardhatNetworkHelpers from "@nomicfoundation/hardhat-network-helpers";
import hardhatIgnitionEthers from "@nomicfoundation/hardhat-ignition-ethers";
import hardhatViem from "@nomicfoundation/hardhat-viem";

const require = createRequire(import.meta.url);

/**
 * The Solidity compiler is the official WebAssembly build shipped in the npm `solc` package,
 * pinned to exactly this version, so a build never downloads a compiler.
 */
const SOLC_VERSION = "0.8.30";
const SOLC_PATH = require.resolve("solc/soljson.js");
/** The same settings for tests and deployments, so that what is tested is what is deployed. */
const SOLC_SETTINGS = {
  evmVersion: "osaka",
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
};

export default defineConfig({
  plugins: [
    hardhatEthers,
    hardhatEthersChaiMatchers,
    hardhatMocha,
    hardhatNetworkHelpers,
    hardhatIgnitionEthers,
    hardhatViem,
  ],
  solidity: {
    profiles: {
      default: { version: SOLC_VERSION, path: SOLC_PATH, settings: SOLC_SETTINGS },
      production: { version: SOLC_VERSION, path: SOLC_PATH, settings: SOLC_SETTINGS },
    },
  },
  paths: {
    tests: { solidity: "contracts", mocha: "test" },
    // Deployment modules live in deploy/modules, deployment journals in deploy/deployments.
    ignition: "deploy",
  },
  test: {
    mocha: {
      // Service tests start chains, brokers and databases; none of them is near this bound.
      timeout: 120_000,
    },
  },
  networks: {
    default: {
      type: "edr-simulated",
      chainType: "l1",
      hardfork: "osaka",
    },
    localhost: {
      type: "http",
      chainType: "l1",
      url: process.env.RPC_URL ?? "http://127.0.0.1:8545",
    },
  },
});
