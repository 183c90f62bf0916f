class ExchangeRate < ApplicationRecord
end
