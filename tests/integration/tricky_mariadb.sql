-- A MariaDB database that exercises what a restore must carry over byte for byte.
CREATE TABLE `tâble with spaces ✓` (
  id INT AUTO_INCREMENT PRIMARY KEY,
  `Cölumn "Q"` VARCHAR(100) CHARACTER SET utf8mb4 NOT NULL,
  emoji VARCHAR(20) CHARACTER SET utf8mb4,
  payload LONGBLOB,
  amount DECIMAL(12, 4),
  doubled DECIMAL(13, 4) AS (amount * 2) PERSISTENT,
  at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(200), n INT) ENGINE=InnoDB;
CREATE TABLE legacy_myisam (k INT PRIMARY KEY, v TEXT) ENGINE=MyISAM;
DELIMITER //
CREATE TRIGGER `after insert ✓` AFTER INSERT ON `tâble with spaces ✓` FOR EACH ROW
BEGIN
  INSERT INTO audit (what, n) VALUES (CONCAT('insert:', NEW.`Cölumn "Q"`), NEW.id);
END//
CREATE FUNCTION `dübble`(x INT) RETURNS INT DETERMINISTIC RETURN x * 2//
CREATE PROCEDURE `fill ✓`(IN how_many INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  WHILE i < how_many DO
    INSERT INTO `tâble with spaces ✓` (`Cölumn "Q"`, emoji, payload, amount)
    VALUES (CONCAT('row ', i, ' ünïcødé ''quote'''), '🐘🐬', UNHEX(SHA2(CONCAT('blob', i), 512)), i / 7);
    SET i = i + 1;
  END WHILE;
END//
DELIMITER ;
CREATE VIEW `vïew of rows` AS SELECT id, `dübble`(id) AS twice, emoji FROM `tâble with spaces ✓` WHERE id % 2 = 0;
CREATE EVENT `nightly ✓` ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00' DISABLE
  DO DELETE FROM audit WHERE id < 0;
CALL `fill ✓`(60);
INSERT INTO `tâble with spaces ✓` (`Cölumn "Q"`, payload) VALUES ('binary zeros', X'00FF00FF0000');
INSERT INTO legacy_myisam VALUES (1, 'MyISAM is copied too'), (2, REPEAT('x', 5000));
