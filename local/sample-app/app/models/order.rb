class Order < ApplicationRecord
  belongs_to :user
  scope :unpaid, -> { where(paid_at: nil) }
end
