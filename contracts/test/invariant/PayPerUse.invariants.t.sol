// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AgreementView} from "../../types/DataTypes.sol";
import {TestBase} from "../utils/Vm.sol";
import {Handler} from "./Handler.sol";

/// @notice Invariants of PayPerUse under random sequences of opening, topping up, metering in both trust
/// modes, replaying, settling, direct debits, debt payments, time passing and closing. README.md beside this
/// file states each one in a sentence.
contract PayPerUseInvariants is TestBase {
    Handler internal handler;

    function setUp() public {
        handler = new Handler();
    }

    /// @dev The fuzzer calls only the handler.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @dev Tokens held by the contract equal escrows plus unpaid earnings (unsettled and credited).
    /// hardhat-config: invariant.runs = 64
    /// hardhat-config: invariant.depth = 40
    function invariant_TokensEqualEscrowsPlusUnpaidEarnings() public view {
        uint256 owed;
        for (uint256 i; i < handler.agreementCount(); ++i) {
            uint256 id = handler.agreementIds(i);
            owed += handler.ppu().getAgreement(id).escrow + handler.ppu().unsettledEarnings(id);
        }
        for (uint256 i; i < handler.payeeCount(); ++i) {
            owed += handler.ppu().earnings(handler.payees(i), address(handler.token()));
        }
        assertEq(handler.token().balanceOf(address(handler.ppu())), owed, "tokens == escrows + unpaid earnings");
    }

    /// @dev A meter never goes backwards.
    /// hardhat-config: invariant.runs = 64
    /// hardhat-config: invariant.depth = 40
    function invariant_MeterNeverGoesBackwards() public view {
        assertTrue(!handler.ghostMeterWentBackwards(), "meter went backwards");
    }

    /// @dev No one is charged more than tariff x units (rounded up).
    /// hardhat-config: invariant.runs = 64
    /// hardhat-config: invariant.depth = 40
    function invariant_NeverChargedMoreThanTariffTimesUnits() public view {
        for (uint256 i; i < handler.agreementCount(); ++i) {
            AgreementView memory a = handler.ppu().getAgreement(handler.agreementIds(i));
            uint256 ceiling = (a.cumulativeUnits * handler.PRICE() + handler.UNIT_SCALE() - 1) / handler.UNIT_SCALE();
            assertLe(a.totalCharged, ceiling, "charged <= tariff x units");
        }
    }

    /// @dev A reading can be charged only once.
    /// hardhat-config: invariant.runs = 64
    /// hardhat-config: invariant.depth = 40
    function invariant_ReadingChargedOnlyOnce() public view {
        assertTrue(!handler.ghostChargedTwice(), "a reading was charged twice");
    }
}
