class AddTotalsToUsers < ActiveRecord::Migration[6.1]
  def change
    add_column :users, :orders_total_cents, :integer, null: false, default: 0
    add_column :users, :totals_recomputed_at, :datetime
  end
end
