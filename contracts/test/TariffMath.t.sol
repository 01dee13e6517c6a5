// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {TariffMath} from "../libraries/TariffMath.sol";
import {Tier} from "../types/DataTypes.sol";
import {TestBase} from "./utils/Vm.sol";

/// @notice Fuzz tests of tariff pricing: cost(new) - cost(previous) never drifts, never decreases, and never
/// charges more than the highest price times the units, rounded up.
contract TariffMathTest is TestBase {
    Tier[] internal tiers;

    function _setTiers(uint256 t1, uint256 p1, uint256 t2, uint256 p2) internal {
        delete tiers;
        tiers.push(Tier({fromUnits: t1, price: p1}));
        tiers.push(Tier({fromUnits: t2, price: p2}));
    }

    function testFuzz_FlatCostIsMonotone(uint96 a, uint96 b, uint96 price, uint64 scale) public pure {
        vm.assume(scale > 0);
        (uint256 lo, uint256 hi) = a <= b ? (uint256(a), uint256(b)) : (uint256(b), uint256(a));
        assertLe(TariffMath.flatCost(lo, price, scale), TariffMath.flatCost(hi, price, scale), "monotone");
    }

    /// @dev Charging a meter in any number of steps sums to exactly the cost of the total.
    function testFuzz_StepwiseChargesSumToTotal(uint96 price, uint64 scale, uint32[8] memory steps) public pure {
        vm.assume(scale > 0);
        uint256 units;
        uint256 charged;
        for (uint256 i; i < steps.length; ++i) {
            uint256 next = units + steps[i];
            charged += TariffMath.flatCost(next, price, scale) - TariffMath.flatCost(units, price, scale);
            units = next;
        }
        assertEq(charged, TariffMath.flatCost(units, price, scale), "no drift");
    }

    /// @dev One reading never costs more than its units at the highest price, rounded up.
    function testFuzz_ChargeNeverExceedsPriceTimesUnits(
        uint96 previous,
        uint96 added,
        uint96 price,
        uint64 scale,
        uint96 tierPrice1,
        uint96 tierPrice2
    ) public {
        vm.assume(scale > 0);
        uint256 from = previous;
        uint256 to = uint256(previous) + added;
        vm.assume(to <= type(uint96).max);
        _setTiers(1_000, tierPrice1, 1_000_000, tierPrice2);
        uint256 maxPrice = price;
        if (tierPrice1 > maxPrice) maxPrice = tierPrice1;
        if (tierPrice2 > maxPrice) maxPrice = tierPrice2;
        uint256 charge = TariffMath.tieredCost(to, price, scale, tiers) - TariffMath.tieredCost(from, price, scale, tiers);
        uint256 bound_ = (uint256(added) * maxPrice + scale - 1) / scale;
        assertLe(charge, bound_, "charge <= ceil(units * maxPrice / scale)");
        assertLe(TariffMath.tieredCost(from, price, scale, tiers), TariffMath.tieredCost(to, price, scale, tiers), "tiers monotone");
    }

    /// @dev Tiers at the base price change nothing.
    function testFuzz_TiersAtBasePriceEqualFlat(uint96 units, uint96 price, uint64 scale, uint64 t1, uint64 t2) public {
        vm.assume(scale > 0 && t1 > 0 && t2 > t1);
        _setTiers(t1, price, t2, price);
        assertEq(TariffMath.tieredCost(units, price, scale, tiers), TariffMath.flatCost(units, price, scale), "flat");
    }

    /// @dev Worked example: 0.25 per kWh metered in Wh, 0.20 from 1 MWh on.
    function test_TieredCost_WorkedExample() public {
        _setTiers(1_000_000, 200_000, 2_000_000, 200_000);
        // 1,500,000 Wh: 1,000,000 Wh at 250,000/kWh + 500,000 Wh at 200,000/kWh (6-decimal token units).
        assertEq(TariffMath.tieredCost(1_500_000, 250_000, 1_000, tiers), 350_000_000, "worked example");
        assertEq(TariffMath.tieredCost(0, 250_000, 1_000, tiers), 0, "zero");
        assertEq(TariffMath.tieredCost(2_500_000, 250_000, 1_000, tiers), 550_000_000, "beyond the last tier");
    }
}
