class BillingReport < ApplicationRecord
end
