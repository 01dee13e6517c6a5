/** Creditor and mandates used by the bank bridge tests: real IBAN check digits, names with umlauts. */
import { createWalletClient, http, type Abi, type Address } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import type { Creditor } from "../../services/bank/bridge.ts";
import { loadArtifact } from "../../services/shared/artifacts.ts";
import { DEMO_CREDITOR } from "../../services/sim/bank.ts";
import { chainFor } from "../../services/shared/deployment.ts";
import type { Harness } from "../oracle/harness.ts";
import type { MandateInput } from "../../services/bank/mandates.ts";

export const CREDITOR: Creditor = DEMO_CREDITOR;

/** Valid German IBANs (bank code 370 400 44). */
export const IBANS = [
  "DE89370400440532013000",
  "DE12500105170648489890",
  "DE02100500000054540402",
  "DE75512108001245126199",
];

export function mandateInput(index: number, overrides: Partial<MandateInput> = {}): MandateInput {
  return {
    mandateId: `PPU-M-${String(index).padStart(4, "0")}`,
    signedOn: "2026-10-01",
    debtorName: ["Jörg Müller", "Zoë Ærøskøbing", "Łukasz Żółć & Söhne", "Σοφία Παπαδοπούλου"][
      index % 4
    ]!,
    iban: IBANS[index % IBANS.length]!,
    address:
      index % 2 === 0
        ? {
            street: "Domstraße",
            buildingNumber: String(index + 1),
            postCode: "50667",
            town: "Köln",
            country: "DE",
          }
        : {
            town: "München",
            country: "DE",
            postCode: "80331",
            lines: ["Marienplatz 8", "Hinterhaus, 2. OG"],
          },
    ...overrides,
  };
}

/** Mints the harness's EURC-like token (the deployer may) to an account, e.g. the bank's. */
export async function mint(h: Harness, to: Address, amount: bigint): Promise<void> {
  const wallet = createWalletClient({
    account: privateKeyToAccount(h.chain.accounts[0]!.privateKey),
    transport: http(h.chain.rpcUrl),
    chain: await chainFor(h.chain.rpcUrl),
  });
  const hash = await wallet.writeContract({
    address: h.token,
    abi: loadArtifact("MockEURC").abi as Abi,
    functionName: "mint",
    args: [to, amount],
  } as never);
  await h.client.waitForTransactionReceipt({ hash });
}
