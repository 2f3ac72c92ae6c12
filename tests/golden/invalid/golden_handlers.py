"""Handler classes for the I00x golden fixtures, imported from the working directory as ``onex validate`` does."""


class PriceCalculator:
    node_type = "COMPUTE"

    def price(self, order: object) -> object:
        return order


class OrderReducer:
    node_type = "REDUCER"
