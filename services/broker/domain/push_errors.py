"""Why the broker refuses a subscription, a change, a redelivery or a usage query."""

from tsunagu.errors import BadRequest, Conflict, DomainError, Forbidden, NotFound


class InvalidSubscription(BadRequest):
    code = "invalid-subscription"
    title = "The subscription is malformed (items, purpose or webhook URL)"


class TooManySubscriptions(Conflict):
    code = "too-many-subscriptions"
    title = "This client has as many subscriptions as it may have"


class UnknownSubscription(NotFound):
    code = "unknown-subscription"
    title = "No such subscription of this client"


class InvalidChange(BadRequest):
    code = "invalid-change"
    title = "The change is malformed or its value does not match the item's schema"


class NotItemProvider(Forbidden):
    code = "not-item-provider"
    title = "The calling client is not a registered provider of this item"


class UnknownDelivery(NotFound):
    code = "unknown-delivery"
    title = "No such dead delivery of this client"


class DeliveryExpired(DomainError):
    code = "delivery-expired"
    title = "The dead delivery's value was cleared after its retention; it cannot be redelivered"
    status = 410


class InvalidUsageQuery(BadRequest):
    code = "invalid-usage-query"
    title = "tenant: a slug; month: YYYY-MM"
