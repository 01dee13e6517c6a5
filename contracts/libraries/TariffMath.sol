// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {Tier} from "../types/DataTypes.sol";

/// @title TariffMath
/// @notice Pricing of cumulative units under a tariff: a base price with optional volume tiers.
/// @dev cost(u) = floor(sum over bands of unitsInBand * bandPrice / unitScale). The division happens once, at
/// the end, so cost is monotone and cost(b) - cost(a) summed over any split of [0, u] equals cost(u): charging
/// `cost(new) - cost(previous)` per reading never drifts from pricing the total at once.
library TariffMath {
    /// @notice Cost of `units` at a single `price` per `unitScale` units, rounded down.
    /// @dev Callers keep units and price below 2^128, so the product cannot overflow.
    function flatCost(uint256 units, uint256 price, uint256 unitScale) internal pure returns (uint256) {
        return units * price / unitScale;
    }

    /// @notice Cost of `units` cumulative units with tiers (strictly ascending `fromUnits`), rounded down.
    function tieredCost(uint256 units, uint256 price, uint256 unitScale, Tier[] storage tiers)
        internal
        view
        returns (uint256)
    {
        uint256 length = tiers.length;
        if (length == 0) return Math.mulDiv(units, price, unitScale);
        // The numerator sum can exceed 256 bits only for absurd inputs (units < 2^128 and prices < 2^96 keep
        // each product below 2^224 and at most 2^16 tiers below 2^240); checked arithmetic reverts beyond.
        uint256 numerator;
        uint256 bandStart;
        uint256 bandPrice = price;
        for (uint256 i; i < length; ++i) {
            Tier storage tier = tiers[i];
            uint256 bandEnd = tier.fromUnits;
            if (units <= bandEnd) {
                return (numerator + (units - bandStart) * bandPrice) / unitScale;
            }
            numerator += (bandEnd - bandStart) * bandPrice;
            bandStart = bandEnd;
            bandPrice = tier.price;
        }
        return (numerator + (units - bandStart) * bandPrice) / unitScale;
    }
}
