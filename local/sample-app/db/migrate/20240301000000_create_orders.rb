class CreateOrders < ActiveRecord::Migration[6.1]
  def change
    create_table :orders do |t|
      t.references :user, null: false, foreign_key: true
      t.integer :amount_cents, null: false
      t.string :status, null: false, default: "open"
      t.timestamps
    end
    add_index :orders, :status
  end
end
